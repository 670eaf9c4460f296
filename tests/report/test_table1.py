"""Table 1 from a prepared dataset: counts per fold beside the paper's, and the fold-3 note."""

from __future__ import annotations

from iusdiff.data.slices import SliceDataset, SliceRecord
from iusdiff.data.splits import CASES, splits_for
from iusdiff.report.table1 import build_table1


def test_table1_counts_and_fold3_note():
    records = tuple(
        SliceRecord(subject=s, slice_index=k, position_mm=0.0, tumour_fraction=0.1, image="", mask="", image_sha256="", mask_sha256="")
        for s in CASES
        for k in range(2 if s != 14 else 3)
    )
    dataset = SliceDataset(root=None, records=records, splits=splits_for(CASES))  # type: ignore[arg-type]
    table = build_table1(dataset, "profile 'x'")
    fold3 = table.rows[2]
    assert fold3[0] == "Fold 3" and "14*" in fold3[1].split()
    assert fold3[2] == str(17 * 2 + 3) and fold3[3] == "345"  # ours beside the paper's
    assert table.rows[-1][:4] == ["Test", "24 25 27", "6", "50"]
    assert any("subject 14" in note for note in table.notes)
    assert all("*" not in row[1] for i, row in enumerate(table.rows) if i != 2)
