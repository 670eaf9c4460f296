"""Checks of iusdiff.evaluation.metrics against closed forms, known shapes and reference libraries."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.ndimage
import surface_distance
import torch
from torchmetrics.image.fid import _compute_fid
from torchmetrics.image.kid import poly_mmd

from iusdiff.evaluation import metrics
from iusdiff.evaluation.stats import loglog_fit

# The reference calls below hit surface-distance's deprecated scipy.ndimage imports.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance")


def star(amplitude: float, k: int = 5, r0: float = 60.0, size: int = 256, scale: float = 1.0) -> np.ndarray:
    """Filled polygon r(θ) = scale·r0·(1 + a·cos kθ) centred in a size×size uint8 mask."""
    theta = np.linspace(0.0, 2.0 * np.pi, 2000, endpoint=False)
    r = scale * r0 * (1.0 + amplitude * np.cos(k * theta))
    pts = np.stack([size / 2 + r * np.cos(theta), size / 2 + r * np.sin(theta)], axis=1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts.round().astype(np.int32)], 1)
    return mask


def random_blob(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """Irregular, possibly multi-component mask from thresholded smoothed noise."""
    field = scipy.ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma=size / 12)
    return field > np.quantile(field, rng.uniform(0.6, 0.95))


def square(top: int, left: int, side: int = 40, size: int = 96) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


# ---------------------------------------------------------------------------- size and ESD


def test_tumour_size_is_fraction_above_half() -> None:
    mask = np.zeros((10, 10))
    mask[:2, :] = 0.6
    mask[2, :] = 0.5  # not > 0.5
    assert metrics.tumour_size(mask) == pytest.approx(0.2)
    assert metrics.tumour_size((mask > 0.5).astype(np.uint8) * 255) == pytest.approx(0.2)


def test_esd_equals_parseval_closed_form() -> None:
    signals = metrics.esd_signals(star(0.15, k=4))
    assert len(signals.d) == metrics.ESD_POINTS
    deviation = signals.d - signals.d.mean()
    assert signals.esd == pytest.approx(2.0 * np.sum(deviation**2), rel=1e-10)
    assert metrics.esd(star(0.15, k=4)) == signals.esd


def test_esd_subsamples_by_index_and_centroid_is_mean_of_samples() -> None:
    mask = star(0.2)
    all_points = metrics.contour_points(mask, n_points=10**6)
    assert len(all_points) > 100
    idx = np.linspace(0, len(all_points) - 1, 100).astype(int)
    signals = metrics.esd_signals(mask)
    np.testing.assert_array_equal(signals.points, all_points[idx])
    np.testing.assert_allclose(signals.centroid, all_points[idx].mean(axis=0))


def test_esd_of_axis_aligned_square_is_zero() -> None:
    signals = metrics.esd_signals(square(10, 20))
    assert len(signals.points) == 4  # CHAIN_APPROX_SIMPLE keeps only the corners
    assert signals.esd == pytest.approx(0.0, abs=1e-9)


def test_esd_of_disc_is_small_relative_to_its_radius() -> None:
    signals = metrics.esd_signals(star(0.0))
    # A relative radial energy below 1e-3 (a star with a = 0.05 is ~0.3 % already).
    assert signals.esd / (2 * len(signals.d) * signals.d.mean() ** 2) < 1e-3


def test_esd_grows_with_harmonic_amplitude() -> None:
    values = [metrics.esd(star(a)) for a in (0.0, 0.05, 0.1, 0.2, 0.3)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_esd_of_self_similar_shapes_scales_like_size() -> None:
    masks = [star(0.2, size=512, scale=s) for s in (0.5, 0.7, 1.0, 1.4, 2.0, 3.0)]
    fit = loglog_fit([metrics.tumour_size(m) for m in masks], [metrics.esd(m) for m in masks])
    assert fit.beta1 == pytest.approx(1.0, abs=0.1)  # ESD ∝ length², size ∝ length²


def test_printed_variant_is_mean_fft_magnitude_of_absolute_deviation() -> None:
    mask = star(0.2, k=3)
    d = metrics.esd_signals(mask).d
    expected = np.abs(np.fft.fft(np.abs(d - d.mean()))).mean()
    printed = metrics.esd(mask, variant="printed")
    assert printed == pytest.approx(expected)
    assert printed != pytest.approx(metrics.esd(mask))


def test_esd_uses_all_points_when_fewer_than_100() -> None:
    mask = np.zeros((32, 32), np.uint8)
    cv2.fillPoly(mask, [np.array([[5, 5], [25, 8], [20, 26], [8, 20]], np.int32)], 1)
    signals = metrics.esd_signals(mask)
    assert len(signals.points) < 100
    assert len(signals.psd) == len(signals.points)
    assert signals.esd == pytest.approx(2.0 * np.sum((signals.d - signals.d.mean()) ** 2))


def test_esd_stacks_all_external_contours_and_skips_single_pixels() -> None:
    two = square(5, 5, side=20) | square(50, 50, side=30)
    lone = two.copy()
    lone[90, 90] = True  # a one-point contour: the authors' code drops it
    assert len(metrics.contour_points(two)) == 8
    np.testing.assert_array_equal(metrics.contour_points(lone), metrics.contour_points(two))


def test_esd_empty_mask_raises() -> None:
    with pytest.raises(ValueError, match="empty mask"):
        metrics.esd(np.zeros((16, 16)))
    with pytest.raises(ValueError, match="single pixel"):
        metrics.esd(np.pad(np.ones((1, 1)), 3))
    with pytest.raises(ValueError, match="variant"):
        metrics.esd(star(0.1), variant="paper")


# ---------------------------------------------------------------------------- Dice and HD95


def test_dice_and_hd95_equal_surface_distance_on_random_shapes() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        pred, ref = random_blob(rng), random_blob(rng)
        spacing = (1.0, 1.0) if rng.random() < 0.5 else (0.5, 0.8)
        sd = surface_distance.compute_surface_distances(ref, pred, spacing)
        assert metrics.dice(pred, ref) == surface_distance.compute_dice_coefficient(ref, pred)
        assert metrics.hd95(pred, ref, spacing) == surface_distance.compute_robust_hausdorff(sd, 95)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_offset_squares_have_known_dice_and_hd95(k: int) -> None:
    ref, pred = square(20, 20), square(20 + k, 20)
    assert metrics.hd95(pred, ref) == pytest.approx(k)
    assert metrics.hd95(pred, ref, spacing=(0.5, 1.0)) == pytest.approx(0.5 * k)  # rows scaled
    assert metrics.dice(pred, ref) == pytest.approx((40 - k) / 40)


def test_empty_masks_follow_surface_distance_conventions() -> None:
    empty, full = np.zeros((32, 32), bool), square(4, 4, side=10, size=32)
    assert math.isnan(metrics.dice(empty, empty))
    assert metrics.dice(empty, full) == 0.0
    assert metrics.hd95(empty, full) == math.inf
    assert metrics.hd95(full, empty) == math.inf
    assert metrics.hd95(empty, empty) == math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.dice(full, np.zeros((16, 16)))


def test_summarise_counts_nan_and_inf_and_ignores_them() -> None:
    out = metrics.summarise([1.0, 2.0, 6.0, math.nan, math.inf, -math.inf])
    assert (out["n"], out["n_finite"], out["n_nan"], out["n_inf"]) == (6, 3, 1, 2)
    assert out["mean"] == pytest.approx(3.0)
    assert out["median"] == pytest.approx(2.0)
    assert out["std"] == pytest.approx(np.std([1, 2, 6], ddof=1))
    assert math.isnan(metrics.summarise([math.nan])["mean"])


# ---------------------------------------------------------------------------- FID and KID


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(120, 32)) @ rng.normal(size=(32, 32)) * 0.3
    b = rng.normal(size=(90, 32)) @ rng.normal(size=(32, 32)) * 0.3 + 0.2
    return a, b


def _torchmetrics_fid(a: np.ndarray, b: np.ndarray) -> float:
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return float(_compute_fid(ta.mean(0), torch.cov(ta.T), tb.mean(0), torch.cov(tb.T)))


def test_fid_equals_torchmetrics(features: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = features
    expected = _torchmetrics_fid(a, b)
    assert metrics.fid_from_features(a, b) == pytest.approx(expected, rel=1e-4)
    assert metrics.fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_with_fewer_samples_than_dimensions_stays_finite(features: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = features[0][:20], features[1][:25]  # singular covariances (n < d = 32)
    value = metrics.fid_from_features(a, b)  # the nuclear-norm path, exact without sqrtm
    assert math.isfinite(value)
    assert value == pytest.approx(_torchmetrics_fid(a, b), rel=1e-4)
    assert metrics.fid_from_features(a, a) == pytest.approx(0.0, abs=1e-9)


def test_kid_single_subset_equals_torchmetrics_poly_mmd(features: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = features
    ia, ib = metrics.kid_subset_indices(len(a), len(b), 50, 1, seed=3)[0]
    expected = float(poly_mmd(torch.from_numpy(a[ia]), torch.from_numpy(b[ib])))
    assert metrics.mmd2_unbiased(a[ia], b[ib]) == pytest.approx(expected, rel=1e-4)


def test_kid_mean_and_std_equal_torchmetrics_on_same_subsets(features: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = features
    subsets = metrics.kid_subset_indices(len(a), len(b), 50, 20, seed=5)
    reference = torch.stack([poly_mmd(torch.from_numpy(a[i]), torch.from_numpy(b[j])) for i, j in subsets])
    mean, std = metrics.kid_from_features(a, b, subset_size=50, n_subsets=20, seed=5)
    assert mean == pytest.approx(float(reference.mean()), rel=1e-4)
    assert std == pytest.approx(float(reference.std(unbiased=False)), rel=1e-4)


def test_kid_is_seeded_and_shrinks_subsets_with_warning(features: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = features
    assert metrics.kid_from_features(a, b, seed=1) == metrics.kid_from_features(a, b, seed=1)
    with pytest.warns(UserWarning, match="subsets of 30"):
        mean, std = metrics.kid_from_features(a[:30], b[:40], subset_size=50, n_subsets=5)
    assert math.isfinite(mean) and std >= 0.0
