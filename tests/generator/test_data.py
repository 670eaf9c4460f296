"""Generator data: paired augmentation keeps image and mask aligned; batches are step functions."""

from __future__ import annotations

import numpy as np
import torch

from iusdiff.generator.data import Augmentation, augment_masks, augment_pair, batch_indices, generator_for, seed_for

GEOMETRY_ONLY = Augmentation(brightness=0.0, contrast=0.0, gamma=0.0, p=1.0)


def blobs(n: int = 8, size: int = 64) -> torch.Tensor:
    """Off-centre, asymmetric {0,1} masks, so any rotation, shift or flip is visible."""
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):
        masks[i, 0, 10 + i : 30 + i, 12:24] = 1
        masks[i, 0, 26 + i : 34 + i, 24:44] = 1
    return masks


def test_image_and_mask_get_the_same_geometric_transform():
    masks = blobs()
    images = masks * 2 - 1  # an image that is its mask: bright tumour, dark background
    aug_images, aug_masks = augment_pair(images, masks, GEOMETRY_ONLY, generator_for(0, 1))
    moved = (aug_masks != masks).flatten(1).any(dim=1)
    assert moved.all()  # p = 1: every pair was transformed
    assert set(torch.unique(aug_masks).tolist()) <= {0.0, 1.0}
    from_image = aug_images > 0
    disagree = (from_image != (aug_masks > 0.5)).float().mean().item()
    assert disagree < 0.01  # only interpolation at the boundary differs (bilinear vs nearest)


def test_intensity_augmentation_changes_the_image_only():
    masks = blobs()
    images = torch.rand(masks.shape) * 2 - 1
    aug = Augmentation(rotation_deg=0.0, translate_fraction=0.0, hflip=False, p=1.0)
    aug_images, aug_masks = augment_pair(images, masks, aug, generator_for(0, 2))
    assert torch.equal(aug_masks, masks)
    assert not torch.allclose(aug_images, images)
    assert aug_images.min() >= -1 and aug_images.max() <= 1


def test_same_generator_same_augmentation_and_masks_alone_match_pairs():
    masks = blobs()
    images = masks * 2 - 1
    first = augment_pair(images, masks, GEOMETRY_ONLY, generator_for(3, 4))
    second = augment_pair(images, masks, GEOMETRY_ONLY, generator_for(3, 4))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(augment_masks(masks, GEOMETRY_ONLY, generator_for(3, 4)), first[1])


def test_batches_cover_each_epoch_once_and_depend_only_on_the_step():
    n, batch = 10, 4
    seen = torch.cat([batch_indices(7, step, batch, n) for step in range(5)]).numpy()  # 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert torch.equal(batch_indices(7, 3, batch, n), batch_indices(7, 3, batch, n))
    ranks = [batch_indices(7, 2, 2, n, rank=r, world=2) for r in range(2)]
    assert torch.equal(torch.cat(ranks), batch_indices(7, 2, 4, n))  # two processes split one batch


def test_seeds_are_stable_and_distinct():
    assert seed_for(0, 1, 2) == seed_for(0, 1, 2)
    assert len({seed_for(0, fold, index) for fold in range(5) for index in range(100)}) == 500
    assert 0 <= seed_for(123) < 2**63
    assert np.random.default_rng(seed_for(1)).integers(1000) == np.random.default_rng(seed_for(1)).integers(1000)
