"""MedSAM code path on a small random-weight SAM saved to disk (no MedSAM weights offline)."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from iusdiff.errors import InputError
from iusdiff.evaluation.medsam import MEDSAM_SIZE, boxes_from_mask, load_medsam, preprocess, scale_boxes, segment

from helpers import run_script, tiny_sam


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "medsam_tiny.pth"
    torch.save(tiny_sam().state_dict(), path)
    return path


def two_blobs() -> np.ndarray:
    mask = np.zeros((64, 80), np.uint8)
    mask[10:20, 5:15] = 1
    mask[30:50, 40:70] = 1
    return mask


def test_one_inclusive_box_per_external_contour():
    assert boxes_from_mask(two_blobs()).tolist() == [[5, 10, 14, 19], [40, 30, 69, 49]]
    assert boxes_from_mask(np.zeros((8, 8), np.uint8)).shape == (0, 4)


def test_boxes_scale_to_the_1024_frame_per_axis():
    scaled = scale_boxes(np.array([[40.0, 30.0, 69.0, 49.0]]), height=64, width=80)
    np.testing.assert_allclose(scaled, [[40 * 12.8, 30 * 16, 69 * 12.8, 49 * 16]])


def test_preprocess_is_min_max_scaled_rgb_at_1024():
    image = np.tile(np.linspace(20, 200, 80).astype(np.uint8), (64, 1))
    tensor = preprocess(image)
    assert tensor.shape == (1, 3, MEDSAM_SIZE, MEDSAM_SIZE)
    assert float(tensor.min()) == 0.0 and float(tensor.max()) == 1.0
    assert torch.equal(tensor[0, 0], tensor[0, 2])


def test_segment_loads_from_disk_and_returns_binary_mask_of_input_size(checkpoint):
    model = load_medsam(checkpoint, builder=tiny_sam)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 80), dtype=np.uint8)
    prediction = segment(model, image, two_blobs())
    assert prediction.shape == (64, 80) and prediction.dtype == np.uint8
    assert set(np.unique(prediction)) <= {0, 1}
    assert not segment(model, image, np.zeros((64, 80), np.uint8)).any()


def test_union_over_boxes_contains_each_single_box_prediction(checkpoint):
    model = load_medsam(checkpoint, builder=tiny_sam)
    image = np.random.default_rng(1).integers(0, 256, (64, 80), dtype=np.uint8)
    first, second = np.zeros_like(two_blobs()), np.zeros_like(two_blobs())
    first[10:20, 5:15] = 1
    second[30:50, 40:70] = 1
    union = segment(model, image, two_blobs())
    np.testing.assert_array_equal(union, segment(model, image, first) | segment(model, image, second))


def test_missing_or_wrong_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="MedSAM checkpoint not found.*weights/medsam_vit_b.pth"):
        load_medsam(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"unrelated": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match="not a usable MedSAM ViT-B checkpoint"):
        load_medsam(bad, builder=tiny_sam)


def test_script_without_checkpoint_fails_before_work(tmp_path):

    samples = tmp_path / "samples"
    (samples / "fold1").mkdir(parents=True)
    (samples / "fold1" / "manifest.csv").write_text("index,seed,mask,image,sampler,steps,w,empty\n")
    result = run_script("segment_medsam.py", "--samples", samples, "--out", tmp_path / "out", "--folds", "1", "--medsam-checkpoint", tmp_path / "none.pth")
    assert result.returncode == 2 and "MedSAM checkpoint not found" in result.stderr
    assert not (tmp_path / "out").exists()
