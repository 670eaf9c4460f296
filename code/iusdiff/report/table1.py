"""Table 1: subjects and image counts per fold, ours beside the paper's."""

from __future__ import annotations

from collections import Counter

from iusdiff.data.slices import SliceDataset
from iusdiff.data.splits import FOLD3_CORRECTION_NOTE
from iusdiff.outputs import paper
from iusdiff.outputs.results import Number, table1_key
from iusdiff.outputs.tables import Table

ADDED_MARK = "*"


def _subject_list(subjects: list[int], printed: list[int]) -> str:
    """Subjects as text; ones missing from the printed list are marked."""
    return " ".join(f"{s}{ADDED_MARK}" if s not in printed else str(s) for s in subjects)


def build_table1(dataset: SliceDataset, provenance: str) -> Table:
    counts = Counter(r.subject for r in dataset.records)
    printed = paper.table1()

    def images(subjects: list[int]) -> str:
        return str(sum(counts[s] for s in subjects))

    rows = []
    for entry in dataset.splits["folds"]:
        fold = str(entry["fold"])
        train_printed, train_paper = printed[(fold, "train")]
        val_printed, val_paper = printed[(fold, "val")]
        rows.append(
            [
                f"Fold {fold}",
                _subject_list(entry["train"], train_printed),
                images(entry["train"]),
                str(train_paper),
                _subject_list(entry["val"], val_printed),
                images(entry["val"]),
                str(val_paper),
            ]
        )
    test_printed, test_paper = printed[("test", "test")]
    test = dataset.splits["test"]
    rows.append(["Test", _subject_list(test, test_printed), images(test), str(test_paper), "", "", ""])
    return Table(
        name="table1",
        caption="Training and validation subjects per fold with their image counts (ours beside the paper's); test subjects 24, 25, 27.",
        groups=[("", 1), ("Train", 3), ("Validation", 3)],
        columns=["", "subjects", "images", "images (paper)", "subjects", "images", "images (paper)"],
        rows=rows,
        notes=[f"{ADDED_MARK} {FOLD3_CORRECTION_NOTE}", f"Counts from {provenance}."],
    )


def table1_numbers(dataset: SliceDataset, provenance: str) -> list[Number]:
    """Our image counts under the report's keys."""
    counts = Counter(r.subject for r in dataset.records)
    numbers = [
        Number("Table 1", table1_key(str(entry["fold"]), part), float(sum(counts[s] for s in entry[part])), provenance)
        for entry in dataset.splits["folds"]
        for part in ("train", "val")
    ]
    numbers.append(Number("Table 1", table1_key("test", "test"), float(sum(counts[s] for s in dataset.splits["test"])), provenance))
    return numbers
