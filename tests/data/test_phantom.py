"""The phantom: deterministic to the byte, plausible as iUS, in the RESECT layout."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from iusdiff.data.phantom import generate_case
from iusdiff.data.resect import load_case
from iusdiff.data.slices import select_slices

from helpers import run_script


# sha256 of (US voxels, mask voxels) of case 1, seed 0, scale 0.25. The phantom uses only
# platform-independent numpy/scipy operations, so this holds on any machine; if it changes,
# the phantom's output changed and every downstream checksum with it.
GOLDEN_CASE1_SCALE025 = "72584626b17f3308bf7c436b95bb3dcc8e146f0ec810a979a248aec9834b1517"


def voxel_digest(case) -> str:
    return hashlib.sha256(case.us.tobytes() + case.mask.tobytes()).hexdigest()


def test_same_seed_gives_identical_volumes_and_other_seeds_differ():
    a, b = generate_case(5, seed=0, scale=0.25), generate_case(5, seed=0, scale=0.25)
    assert voxel_digest(a) == voxel_digest(b)
    assert voxel_digest(generate_case(5, seed=1, scale=0.25)) != voxel_digest(a)


def test_golden_digest_is_stable_across_machines():
    assert voxel_digest(generate_case(1, seed=0, scale=0.25)) == GOLDEN_CASE1_SCALE025


def test_cli_files_are_byte_identical_and_independent_of_case_list(tmp_path):
    for name, cases in (("a", "3,7"), ("b", "3,7"), ("c", "7")):
        result = run_script("make_phantom.py", "--out", tmp_path / name, "--cases", cases, "--scale", "0.25", "--workers", "1")
        assert result.returncode == 0, result.stderr
    for rel in (
        "RESECT/NIFTI/Case7/US/Case7-US-before.nii.gz",
        "RESECT_segmentation/Case7/Case7-US-before-tumor.nii.gz",
        "RESECT/NIFTI/Case3/US/Case3-US-before.nii.gz",
        "montage.png",
    ):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    case7 = "RESECT/NIFTI/Case7/US/Case7-US-before.nii.gz"
    assert (tmp_path / "a" / case7).read_bytes() == (tmp_path / "c" / case7).read_bytes()
    loaded = load_case(tmp_path / "a" / "RESECT", tmp_path / "a" / "RESECT_segmentation", 3)
    assert loaded.us.dtype == np.uint8 and set(np.unique(loaded.mask)) == {0, 1}


def test_unknown_case_is_rejected(tmp_path):
    result = run_script("make_phantom.py", "--out", tmp_path / "p", "--cases", "10")
    assert result.returncode == 2 and "not in the paper's Table 1" in result.stderr
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("case", [2, 25])
def test_full_scale_case_looks_like_the_paper_data(case):
    phantom = generate_case(case, seed=0, scale=1.0)
    assert all(96 <= n <= 160 for n in phantom.us.shape)
    assert 0.45 <= phantom.spacing <= 0.5
    chosen = select_slices(phantom.mask, phantom.spacing)
    assert 13 <= len(chosen) <= 24  # the paper's per-subject range
    fractions = [phantom.mask[:, :, k].mean() for k in chosen]
    assert 0.01 <= min(fractions) and max(fractions) <= 0.35
    support = phantom.us > 0
    assert phantom.mask[~support].sum() == 0  # tumours lie inside the imaged fan
    assert 0.3 < support.mean() < 0.9  # a fan, black outside
    tumour = phantom.us[phantom.mask > 0].mean()
    tissue = phantom.us[support & (phantom.mask == 0)].mean()
    assert tumour > 1.3 * tissue  # hyperechoic glioma
