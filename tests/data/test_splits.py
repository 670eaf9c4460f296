"""Split integrity and agreement with the paper's printed Table 1."""

from __future__ import annotations

import pytest

from iusdiff.data.splits import (
    CASES,
    DEVELOPMENT_SUBJECTS,
    TEST_SUBJECTS,
    check_cases,
    paper_folds,
    splits_for,
    validate_splits,
)
from iusdiff.errors import InputError
from iusdiff.outputs import paper


def test_twenty_three_cases_and_three_test_subjects():
    assert len(CASES) == 23
    assert TEST_SUBJECTS == (24, 25, 27)
    assert len(DEVELOPMENT_SUBJECTS) == 20


def test_every_fold_has_18_train_and_2_val_subjects_covering_development():
    for fold in paper_folds():
        assert len(fold.train) == 18 and len(fold.val) == 2
        assert set(fold.train) | set(fold.val) == set(DEVELOPMENT_SUBJECTS)
        assert not set(fold.train) & set(fold.val)


def test_no_leakage_and_no_subject_validates_twice():
    splits = splits_for(CASES)
    validate_splits(splits)
    vals = [s for f in splits["folds"] for s in f["val"]]
    assert len(vals) == len(set(vals)) == 10
    for fold in splits["folds"]:
        assert not (set(fold["train"]) | set(fold["val"])) & set(splits["test"])


def test_matches_printed_table1_except_subject_14_in_fold_3():
    printed = paper.table1()
    for fold in paper_folds():
        train_printed, _ = printed[(str(fold.fold), "train")]
        val_printed, _ = printed[(str(fold.fold), "val")]
        assert list(fold.val) == val_printed
        added = set(fold.train) - set(train_printed)
        assert added == ({14} if fold.fold == 3 else set())
        assert set(train_printed) <= set(fold.train)
    assert printed[("test", "test")] == ([24, 25, 27], 50)


def test_paper_counts_sum_to_388_per_fold():
    printed = paper.table1()
    for fold in range(1, 6):
        assert printed[(str(fold), "train")][1] + printed[(str(fold), "val")][1] == 388


def test_subset_keeps_fold_structure():
    splits = splits_for([1, 3, 8, 24])
    assert splits["test"] == [24]
    fold1 = splits["folds"][0]
    assert fold1 == {"fold": 1, "train": [1, 3], "val": [8]}
    validate_splits(splits)


def test_leaks_are_detected():
    splits = splits_for(CASES)
    splits["folds"][0]["train"].append(24)
    with pytest.raises(ValueError, match="test subjects"):
        validate_splits(splits)
    splits = splits_for(CASES)
    splits["folds"][1]["train"].remove(8)
    splits["folds"][1]["val"].append(8)
    with pytest.raises(ValueError, match="validation subject of folds 1 and 2"):
        validate_splits(splits)


@pytest.mark.parametrize("bad", [[9], [1, 28], [0]])
def test_unknown_case_numbers_are_rejected(bad):
    with pytest.raises(InputError, match="not in the paper's Table 1"):
        check_cases(bad)
