"""prepare_data.py end to end on tiny volumes: outputs, manifest, and every bad-input class."""

from __future__ import annotations

import csv
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from iusdiff.data.resect import save_nifti
from iusdiff.io import load_png, sha256_file

from helpers import blob_case, run_script, write_case


def prepare(resect: Path, seg: Path, out: Path, *extra, size=32, cases="1,2"):
    return run_script(
        "prepare_data.py", "--resect-root", resect, "--seg-root", seg, "--out", out, "--size", size, "--cases", cases, *extra
    )


def test_writes_manifest_pngs_and_splits(resect_tree, tmp_path):
    out = tmp_path / "slices"
    result = prepare(*resect_tree, out)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(out / "slices.csv")))
    assert set(rows[0]) >= {"subject", "slice_index", "position_mm", "tumour_fraction", "image", "mask", "image_sha256", "mask_sha256"}
    # discrete sphere at k=24: slices 23, 24, 25 tie for the most voxels, so k* = 23 (lowest);
    # 0.5 mm: window floor(48*0.5/4)=6 mm, half=6, step=2 -> k 17..29
    assert [int(r["slice_index"]) for r in rows if r["subject"] == "1"] == list(range(17, 30, 2))
    for row in rows:
        image, mask = load_png(out / row["image"]), load_png(out / row["mask"])
        assert image.shape == mask.shape == (32, 32)
        assert set(np.unique(mask)) <= {0, 1}
        assert sha256_file(out / row["image"]) == row["image_sha256"]
        assert sha256_file(out / row["mask"]) == row["mask_sha256"]
        assert float(row["tumour_fraction"]) == pytest.approx(mask.mean(), abs=1e-6)
        assert float(row["position_mm"]) == pytest.approx(int(row["slice_index"]) * 0.5)
    splits = json.loads((out / "splits.json").read_text())
    assert splits["test"] == [] and splits["folds"][0]["train"] == [1, 2]
    options = json.loads((out / "options.json").read_text())
    assert options["options"]["size"] == 32


def test_accepts_layout_without_nifti_folder(tmp_path):
    us, mask = blob_case()
    write_case(tmp_path, 3, us, mask, layout="flat")
    result = prepare(tmp_path / "RESECT", tmp_path / "SEG", tmp_path / "out", cases="3")
    assert result.returncode == 0, result.stderr


def test_rerun_is_byte_identical(resect_tree, tmp_path):
    assert prepare(*resect_tree, tmp_path / "a").returncode == 0
    assert prepare(*resect_tree, tmp_path / "b").returncode == 0
    assert (tmp_path / "a" / "slices.csv").read_bytes() == (tmp_path / "b" / "slices.csv").read_bytes()


def assert_clean_failure(result, out: Path, *needles: str):
    """Non-zero exit, exactly one error line naming the problem, and no output folder."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_missing_us_volume(resect_tree, tmp_path):
    resect, seg = resect_tree
    (resect / "NIFTI" / "Case2" / "US" / "Case2-US-before.nii.gz").unlink()
    out = tmp_path / "out"
    assert_clean_failure(prepare(resect, seg, out), out, "Case2", "US volume not found")


def test_missing_mask(resect_tree, tmp_path):
    resect, seg = resect_tree
    (seg / "Case1" / "Case1-US-before-tumor.nii.gz").unlink()
    out = tmp_path / "out"
    assert_clean_failure(prepare(resect, seg, out), out, "Case1", "tumour mask not found")


def test_truncated_nifti(resect_tree, tmp_path):
    resect, seg = resect_tree
    path = resect / "NIFTI" / "Case2" / "US" / "Case2-US-before.nii.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    out = tmp_path / "out"
    assert_clean_failure(prepare(resect, seg, out), out, "Case2", "cannot read US volume", str(path))


def test_empty_nifti(resect_tree, tmp_path):
    resect, seg = resect_tree
    path = resect / "NIFTI" / "Case2" / "US" / "Case2-US-before.nii.gz"
    path.write_bytes(b"")
    out = tmp_path / "out"
    assert_clean_failure(prepare(resect, seg, out), out, "Case2", "cannot read US volume", str(path), "Empty file")


def test_garbage_file(resect_tree, tmp_path):
    resect, seg = resect_tree
    path = seg / "Case1" / "Case1-US-before-tumor.nii.gz"
    path.write_bytes(b"not a nifti file at all" * 10)
    out = tmp_path / "out"
    assert_clean_failure(prepare(resect, seg, out), out, "Case1", "cannot read tumour mask")


def test_mask_shape_mismatch(tmp_path):
    us, mask = blob_case()
    write_case(tmp_path, 1, us, mask[:, :, :-2])
    out = tmp_path / "out"
    assert_clean_failure(prepare(tmp_path / "RESECT", tmp_path / "SEG", out, cases="1"), out, "Case1", "shape")


def test_mask_affine_mismatch(tmp_path):
    us, mask = blob_case()
    shifted = np.diag([0.5, 0.5, 0.5, 1.0])
    shifted[0, 3] = 2.0
    write_case(tmp_path, 1, us, mask, mask_affine=shifted)
    out = tmp_path / "out"
    assert_clean_failure(prepare(tmp_path / "RESECT", tmp_path / "SEG", out, cases="1"), out, "Case1", "affine")


def test_non_binary_mask(tmp_path):
    us, mask = blob_case()
    write_case(tmp_path, 1, us, (mask * 2).astype(np.uint8))
    out = tmp_path / "out"
    assert_clean_failure(prepare(tmp_path / "RESECT", tmp_path / "SEG", out, cases="1"), out, "Case1", "not binary")


def test_mask_in_0_255_is_accepted(tmp_path):
    us, mask = blob_case()
    write_case(tmp_path, 1, us, (mask * 255).astype(np.uint8))
    result = prepare(tmp_path / "RESECT", tmp_path / "SEG", tmp_path / "out", cases="1")
    assert result.returncode == 0, result.stderr


def test_empty_mask(tmp_path):
    us, mask = blob_case()
    write_case(tmp_path, 1, us, np.zeros_like(mask))
    out = tmp_path / "out"
    assert_clean_failure(prepare(tmp_path / "RESECT", tmp_path / "SEG", out, cases="1"), out, "Case1", "empty")


def test_non_isotropic_spacing(tmp_path):
    us, mask = blob_case()
    affine = np.diag([0.5, 0.5, 0.7, 1.0])
    save_nifti(tmp_path / "RESECT/NIFTI/Case1/US/Case1-US-before.nii.gz", us, affine)
    save_nifti(tmp_path / "SEG/Case1/Case1-US-before-tumor.nii.gz", mask, affine)
    out = tmp_path / "out"
    assert_clean_failure(prepare(tmp_path / "RESECT", tmp_path / "SEG", out, cases="1"), out, "Case1", "not isotropic")


def _patch_pixdim(path: Path, pixdim: tuple[float, float, float]) -> None:
    """Overwrite pixdim[1:4] in a .nii.gz's raw header (nibabel refuses to write such files)."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[80:92] = struct.pack("<3f", *pixdim)  # pixdim[0] at byte 76
    path.write_bytes(gzip.compress(bytes(raw)))


@pytest.mark.parametrize("pixdim", [(0.5, 0.5, 0.0), (0.0, 0.0, 0.0), (-0.5, -0.5, -0.5)])
def test_non_positive_spacing(tmp_path, pixdim):
    us, mask = blob_case()
    for path in write_case(tmp_path, 1, us, mask):
        _patch_pixdim(path, pixdim)
    out = tmp_path / "out"
    assert_clean_failure(prepare(tmp_path / "RESECT", tmp_path / "SEG", out, cases="1"), out, "Case1", "non-positive")


def test_case_not_in_table1(resect_tree, tmp_path):
    out = tmp_path / "out"
    assert_clean_failure(prepare(*resect_tree, out, cases="1,9"), out, "[9]", "Table 1")


@pytest.mark.parametrize("size", [48, 16])
def test_bad_size(resect_tree, tmp_path, size):
    out = tmp_path / "out"
    assert_clean_failure(prepare(*resect_tree, out, size=size), out, "--size", "power of two")


def test_failure_keeps_previous_output(resect_tree, tmp_path):
    """A failed rerun leaves the previous, complete output untouched."""
    resect, seg = resect_tree
    out = tmp_path / "out"
    assert prepare(resect, seg, out).returncode == 0
    before = (out / "slices.csv").read_bytes()
    (seg / "Case2" / "Case2-US-before-tumor.nii.gz").unlink()
    assert prepare(resect, seg, out).returncode == 2
    assert (out / "slices.csv").read_bytes() == before


def test_slice_whose_tumour_vanishes_in_resize_is_dropped_and_recorded(tmp_path):
    us, mask = blob_case(shape=(64, 64, 48), radius=12)
    mask[:, :, 27:] = 0
    mask[40, 40, 28] = 1  # a single voxel on candidate slice 28; halving keeps odd pixels only
    write_case(tmp_path, 1, us, mask)
    out = tmp_path / "out"
    result = prepare(tmp_path / "RESECT", tmp_path / "SEG", out, cases="1")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(out / "slices.csv")))
    assert all(float(r["tumour_fraction"]) > 0 for r in rows)
    options = json.loads((out / "options.json").read_text())
    assert options["dropped_tumour_vanished_in_resize"] == {"1": [28]}
