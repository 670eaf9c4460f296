"""The outside pretraining corpus of the CPU profiles: the phantom's analogue of SD-1.5's data.

The paper's generators start from Stable Diffusion 1.5, pretrained on a large outside corpus
(LAION-5B), and are finetuned on each fold. The CPU profiles have no such weights, so they
pretrain a small base once per run on phantom subjects that are not study subjects: case
numbers from :data:`FIRST_CASE` on, which are no RESECT case number and therefore in no
training, validation or test set of any fold. The corpus is drawn by the same phantom and
sliced by the same rules as the study data, so it is closer to the study's domain than
LAION is to iUS (the README says so). It is written as a prepared slices folder whose
``splits.json`` has one entry, :data:`CORPUS_FOLD`, holding the corpus's own training and
validation subjects; the study's folds never see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from iusdiff.cli import progress
from iusdiff.data.phantom import generate_case
from iusdiff.data.resect import CaseVolumes
from iusdiff.data.slices import SliceRecord, write_case_slices
from iusdiff.data.splits import CASES
from iusdiff.errors import InputError

FIRST_CASE = 1001  # RESECT numbers its cases 1-27; corpus subjects start far from them
CORPUS_FOLD = 0    # the single splits.json entry of a corpus (study folds are 1-5)
LABEL = "outside pretraining corpus (phantom subjects that are no RESECT case and in no split of the study)"


def corpus_cases(subjects: int, first: int = FIRST_CASE) -> tuple[int, ...]:
    """The case numbers of a corpus of ``subjects`` subjects, checked to be no study case."""
    if subjects < 2:
        raise InputError(f"a pretraining corpus needs at least 2 subjects (training and validation), got {subjects}")
    cases = tuple(range(first, first + subjects))
    clash = sorted(set(cases) & set(range(1, max(CASES) + 1)))
    if clash:
        raise InputError(f"corpus case numbers {clash[:5]} overlap RESECT's case numbers 1-{max(CASES)}; start at {FIRST_CASE}")
    return cases


def corpus_splits(cases: Sequence[int], validation_subjects: int) -> dict:
    """The corpus's own split: its last ``validation_subjects`` subjects validate (best model)."""
    if not 0 < validation_subjects < len(cases):
        raise InputError(f"corpus: validation_subjects must be between 1 and {len(cases) - 1}, got {validation_subjects}")
    return {
        "kind": "pretraining corpus",
        "note": LABEL,
        "test": [],
        "folds": [{"fold": CORPUS_FOLD, "train": list(cases[:-validation_subjects]), "val": list(cases[-validation_subjects:])}],
    }


def write_corpus_case(out: Path, case: int, seed: int, scale: float, size: int) -> list[SliceRecord]:
    """One corpus subject's slices, selected and resized exactly as a study subject's."""
    phantom = generate_case(case, seed, scale)
    volumes = CaseVolumes(
        case=case, us=phantom.us, mask=phantom.mask, affine=phantom.affine,
        spacing=(phantom.spacing,) * 3, us_path=Path(), mask_path=Path(),
    )
    records, _ = write_case_slices(volumes, out, size)
    return records


def write_corpus(out: Path, cases: Sequence[int], seed: int, scale: float, size: int, workers: int = 1) -> list[SliceRecord]:
    """All subjects' slices below ``out`` (in parallel processes when asked), in case order."""
    jobs = [(out, case, seed, scale, size) for case in cases]
    if workers <= 1:
        per_case = [write_corpus_case(*job) for job in progress(jobs, desc="corpus", unit="subject")]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(write_corpus_case, *job) for job in jobs]
            per_case = [f.result() for f in progress(futures, desc="corpus", unit="subject")]
    return [record for records in per_case for record in records]
