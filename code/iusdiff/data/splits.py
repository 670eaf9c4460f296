"""The paper's subject-level splits (Table 1), with the documented fold-3 correction.

The test set is subjects 24, 25 and 27 (after Canalini et al.). The five development folds
are copied from Table 1 with one correction: the printed fold-3 training list omits subject
14, yet subject 14 is in no fold-3 set at all, every fold's train + validation image count is
388, and the authors' design is 18 training / 2 validation subjects per fold. So subject 14
belongs to fold 3's training set; we add it and say so wherever Table 1 is printed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from iusdiff.errors import InputError

CASES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 23, 24, 25, 26, 27)
TEST_SUBJECTS: tuple[int, ...] = (24, 25, 27)
DEVELOPMENT_SUBJECTS: tuple[int, ...] = tuple(c for c in CASES if c not in TEST_SUBJECTS)

FOLD3_CORRECTION_NOTE = (
    "Fold 3 training includes subject 14, which the printed Table 1 omits (every fold has "
    "18 training and 2 validation subjects and 388 development images; 14 is in no other "
    "fold-3 set)."
)

# Validation subjects per fold exactly as printed; training = the other development subjects.
_VALIDATION = {1: (8, 15), 2: (3, 14), 3: (19, 26), 4: (4, 7), 5: (16, 23)}


@dataclass(frozen=True)
class Fold:
    fold: int
    train: tuple[int, ...]
    val: tuple[int, ...]


def paper_folds() -> list[Fold]:
    """Table 1 of the paper (fold 3 corrected)."""
    folds = []
    for number, val in _VALIDATION.items():
        train = tuple(s for s in DEVELOPMENT_SUBJECTS if s not in val)
        folds.append(Fold(number, train, val))
    return folds


def check_cases(cases: Iterable[int]) -> tuple[int, ...]:
    """Validate a user-given case list against Table 1 and return it sorted."""
    cases = tuple(sorted(set(int(c) for c in cases)))
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise InputError(
            f"case(s) {unknown} not in the paper's Table 1; valid RESECT case numbers are {list(CASES)}"
        )
    if not cases:
        raise InputError("no cases selected")
    return cases


def splits_for(cases: Iterable[int]) -> dict:
    """Table 1 restricted to the given cases, in the splits.json layout.

    A fold keeps its structure; subjects that are absent are simply left out, so the smoke
    profile can run on a handful of cases.
    """
    present = set(check_cases(cases))
    folds = [
        {
            "fold": f.fold,
            "train": [s for s in f.train if s in present],
            "val": [s for s in f.val if s in present],
        }
        for f in paper_folds()
    ]
    return {
        "test": [s for s in TEST_SUBJECTS if s in present],
        "folds": folds,
        "note": FOLD3_CORRECTION_NOTE,
    }


def validate_splits(splits: dict) -> None:
    """Raise ValueError if the splits leak subjects between sets."""
    test = set(splits["test"])
    seen_in_val: dict[int, int] = {}
    for fold in splits["folds"]:
        train, val = set(fold["train"]), set(fold["val"])
        if train & val:
            raise ValueError(f"fold {fold['fold']}: subjects {sorted(train & val)} in both train and val")
        if (train | val) & test:
            raise ValueError(f"fold {fold['fold']}: test subjects {sorted((train | val) & test)} in train/val")
        for subject in val:
            if subject in seen_in_val:
                raise ValueError(
                    f"subject {subject} is a validation subject of folds {seen_in_val[subject]} and {fold['fold']}"
                )
            seen_in_val[subject] = fold["fold"]
