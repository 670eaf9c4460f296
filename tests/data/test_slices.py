"""Slice selection (SPEC §3) on volumes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from iusdiff.data.resect import load_case
from iusdiff.data.slices import (
    candidate_slices,
    check_size,
    peak_slice,
    resize_image,
    resize_mask,
    select_slices,
    slice_2d,
)
from iusdiff.errors import InputError

from helpers import blob_case, write_case


F32 = lambda x: float(np.float32(x))  # noqa: E731  spacing as the NIfTI header stores it


def test_peak_slice_is_largest_and_lowest_on_ties():
    mask = np.zeros((8, 8, 10), np.uint8)
    mask[:3, :3, 2] = 1  # 9 voxels
    mask[:4, :4, 5] = 1  # 16 voxels
    mask[:2, :8, 7] = 1  # 16 voxels, tie with slice 5
    assert peak_slice(mask) == 5


@pytest.mark.parametrize(
    "n_k, spacing, k_star, expected",
    [
        # 0.5 mm: window floor(64*0.5/4)=8 mm, half=int(8/0.5)//2=8, step=2
        (64, 0.5, 30, list(range(22, 39, 2))),
        # 0.25 mm: window 10 mm, half=20, step=4
        (160, 0.25, 80, list(range(60, 101, 4))),
        # float32(0.2) = 0.2000000030: 320 voxels -> window 16 mm, half=int(79.999..)//2=39
        # (not 40), step=int(4.99999..)=4 (not 5)
        (320, F32(0.2), 160, list(range(121, 200, 4))),
        # float32(0.14): step int(7.142..)=7; window floor(400*0.14/4)=14, half=int(99.99..)//2=49
        (400, F32(0.14), 200, list(range(151, 250, 7))),
        # coarse spacing 1.5 mm: window 15 mm, half=int(10)//2=5, step max(1, int(0.67)) = 1
        (40, 1.5, 20, list(range(15, 26))),
    ],
)
def test_candidate_window_and_step(n_k, spacing, k_star, expected):
    assert candidate_slices(n_k, spacing, k_star) == expected


def test_float32_rounding_differs_from_exact_decimal():
    assert candidate_slices(320, 0.2, 160) == list(range(120, 201, 5))
    assert candidate_slices(320, F32(0.2), 160) != candidate_slices(320, 0.2, 160)


def test_candidates_clipped_at_both_ends_without_wrapping():
    # window floor(64*0.5/4)=8 mm, half=8, step=2
    assert candidate_slices(64, 0.5, 3) == [1, 3, 5, 7, 9, 11]
    assert candidate_slices(64, 0.5, 60) == [52, 54, 56, 58, 60, 62]
    assert all(0 <= k < 64 for k in candidate_slices(64, 0.5, 0))


def test_tumour_free_candidates_are_dropped():
    mask = np.zeros((10, 10, 64), np.uint8)
    mask[2:8, 2:8, 28:33] = 1
    mask[3:7, 3:7, 30] = 1
    mask[:, :, 30] = 1  # peak slice
    # candidates 22..38 step 2; only 28, 30, 32 hold tumour
    assert select_slices(mask, 0.5) == [28, 30, 32]


def test_slice_orientation_matches_simpleitk(tmp_path):
    us, mask = blob_case(shape=(12, 9, 7))
    us_file, _ = write_case(tmp_path, 1, us, mask)
    sitk_array = sitk.GetArrayFromImage(sitk.ReadImage(str(us_file)))  # (k, j, i)
    for k in range(us.shape[2]):
        np.testing.assert_array_equal(slice_2d(us, k), sitk_array[k])
    assert slice_2d(us, 0).shape == (9, 12)


def test_loaded_spacing_is_the_stored_float32_and_matches_simpleitk(tmp_path):
    us, mask = blob_case()
    us_file, _ = write_case(tmp_path, 1, us, mask, spacing=0.2)
    case = load_case(tmp_path / "RESECT", tmp_path / "SEG", 1)
    assert case.spacing[2] == F32(0.2) != 0.2
    assert case.spacing == tuple(sitk.ReadImage(str(us_file)).GetSpacing())


def test_resize_keeps_masks_binary_and_ignores_aspect_ratio():
    image = np.tile(np.arange(200, dtype=np.uint8), (120, 1))
    mask = np.zeros((120, 200), np.uint8)
    mask[30:90, 50:150] = 1
    assert resize_image(image, 64).shape == (64, 64)
    small = resize_mask(mask, 64)
    assert small.shape == (64, 64)
    assert set(np.unique(small)) == {0, 1}
    assert abs(small.mean() - mask.mean()) < 0.02


@pytest.mark.parametrize("size", [0, 16, 48, 100, 257])
def test_size_must_be_power_of_two_at_least_32(size):
    with pytest.raises(InputError, match="power of two"):
        check_size(size)


def test_valid_sizes_pass():
    assert [check_size(s) for s in (32, 64, 256)] == [32, 64, 256]
