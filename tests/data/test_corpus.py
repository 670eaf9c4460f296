"""The outside pretraining corpus: subjects in no study split, sliced like the study, deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iusdiff.data.corpus import CORPUS_FOLD, FIRST_CASE, corpus_cases, corpus_splits, write_corpus_case
from iusdiff.data.phantom import generate_case
from iusdiff.data.resect import CaseVolumes
from iusdiff.data.slices import load_dataset, select_slices, write_case_slices
from iusdiff.data.splits import CASES, paper_folds
from iusdiff.errors import InputError

from helpers import run_script


def test_corpus_subjects_are_no_study_subject_and_validate_apart():
    cases = corpus_cases(6)
    assert cases == tuple(range(FIRST_CASE, FIRST_CASE + 6))
    study = set(CASES) | {s for f in paper_folds() for s in (*f.train, *f.val)} | set(range(1, 28))
    assert not set(cases) & study
    splits = corpus_splits(cases, 2)
    (entry,) = splits["folds"]
    assert entry["fold"] == CORPUS_FOLD not in {f.fold for f in paper_folds()}
    assert entry["val"] == list(cases[-2:]) and not set(entry["train"]) & set(entry["val"])
    assert splits["test"] == [] and "pretraining corpus" in splits["kind"]


@pytest.mark.parametrize("first, subjects, validation", [(20, 4, 1), (FIRST_CASE, 1, 1), (FIRST_CASE, 4, 4)])
def test_bad_corpus_settings_are_refused(first, subjects, validation):
    with pytest.raises(InputError):
        corpus_splits(corpus_cases(subjects, first), validation)


def test_a_corpus_subject_is_sliced_exactly_as_a_study_subject(tmp_path):
    records = write_corpus_case(tmp_path / "c", 1003, seed=1, scale=0.25, size=32)
    phantom = generate_case(1003, 1, 0.25)
    volumes = CaseVolumes(1003, phantom.us, phantom.mask, phantom.affine, (phantom.spacing,) * 3, tmp_path, tmp_path)
    expected, _ = write_case_slices(volumes, tmp_path / "s", 32)
    assert [r.slice_index for r in records] == [r.slice_index for r in expected] == [
        k for k in select_slices(phantom.mask, phantom.spacing) if k in {r.slice_index for r in records}
    ]
    assert [r.image_sha256 for r in records] == [r.image_sha256 for r in expected]


def test_cli_writes_a_labelled_prepared_folder_byte_identically(tmp_path):
    args = ("--subjects", "3", "--seed", "1", "--scale", "0.25", "--size", "32", "--validation-subjects", "1", "--workers", "1")
    for name in ("a", "b"):
        result = run_script("make_corpus.py", "--out", tmp_path / name, *args)
        assert result.returncode == 0, result.stderr
    a, b = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    assert a.records == b.records and {r.subject for r in a.records} == {1001, 1002, 1003}
    assert (tmp_path / "a" / "slices.csv").read_bytes() == (tmp_path / "b" / "slices.csv").read_bytes()
    assert a.select(CORPUS_FOLD, "val") and all(r.subject == 1003 for r in a.select(CORPUS_FOLD, "val"))
    assert "pretraining corpus" in json.loads((tmp_path / "a" / "options.json").read_text())["kind"]
    image = a.image(a.records[0])
    assert image.shape == (32, 32) and image.dtype == np.uint8


def test_cli_refuses_a_corpus_without_validation_subjects(tmp_path):
    result = run_script("make_corpus.py", "--out", tmp_path / "c", "--subjects", "3", "--size", "32", "--validation-subjects", "0")
    assert result.returncode == 2 and "validation_subjects" in result.stderr and not (tmp_path / "c").exists()
