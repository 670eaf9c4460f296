"""The start-up check of RESECT-layout files: headers are read and every voxel must be there."""

from __future__ import annotations

import gzip

import pytest

from iusdiff.data.resect import check_case_files
from iusdiff.errors import InputError


def test_sound_cases_pass(resect_tree):
    for case in (1, 2):
        check_case_files(*resect_tree, case)


def test_an_empty_file_is_named(resect_tree):
    resect, seg = resect_tree
    path = seg / "Case2" / "Case2-US-before-tumor.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=f"^Case2: cannot read tumour mask {path}: Empty file"):
        check_case_files(resect, seg, 2)


def test_a_file_cut_short_in_its_voxels_is_named(resect_tree):
    """The header is intact, so only the missing voxels give it away."""
    resect, seg = resect_tree
    path = resect / "NIFTI" / "Case1" / "US" / "Case1-US-before.nii.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 9 // 10])
    with pytest.raises(InputError, match=f"^Case1: cannot read US volume {path}: Compressed file ended"):
        check_case_files(resect, seg, 1)


def test_a_stream_shorter_than_its_header_says_is_named(resect_tree):
    """A complete gzip stream (trailer and all) that holds fewer voxels than the header describes."""
    resect, seg = resect_tree
    path = resect / "NIFTI" / "Case1" / "US" / "Case1-US-before.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100], mtime=0))
    with pytest.raises(InputError, match=f"^Case1: US volume {path} is truncated: it holds {len(raw) - 100} bytes, its header describes {len(raw)}$"):
        check_case_files(resect, seg, 1)


def test_bytes_after_the_voxels_are_accepted(resect_tree):
    """The trailer's count then disagrees with the header, so the file is counted in full."""
    resect, seg = resect_tree
    path = resect / "NIFTI" / "Case1" / "US" / "Case1-US-before.nii.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + b"padding", mtime=0))
    check_case_files(resect, seg, 1)
