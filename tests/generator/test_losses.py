"""The autoencoders' texture term: it asks for speckle's amount of fine detail, not its phase."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from iusdiff.generator.losses import spectral_loss


def speckle(seed: int, size: int = 64) -> torch.Tensor:
    """Correlated multiplicative noise in [-1, 1] inside a bright square, black elsewhere."""
    gen = torch.Generator().manual_seed(seed)
    noise = F.avg_pool2d(torch.rand(1, 1, size + 1, size + 1, generator=gen), 2, stride=1)
    field = torch.zeros(1, 1, size, size)
    field[..., 16:48, 16:48] = 1.0
    return field * noise * 2 - 1


def test_another_speckle_realisation_costs_less_than_its_blur():
    x, other = speckle(0), speckle(1)
    blurred = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    assert spectral_loss(other, x) < 0.5 * spectral_loss(blurred, x)
    assert F.mse_loss(blurred, x) < F.mse_loss(other, x)  # what MSE prefers instead
    assert spectral_loss(x, x) == 0


def test_texture_in_the_wrong_place_is_penalised_tile_by_tile():
    x = speckle(0)
    moved = torch.roll(x, shifts=(24, 24), dims=(2, 3))  # the speckled square partly over the black border
    assert spectral_loss(moved, x, patch=64) < 1e-4  # one global spectrum cannot tell where texture is
    assert spectral_loss(moved, x, patch=16) > 0.05


def test_only_the_image_channel_counts_and_gradients_flow():
    x = torch.cat([speckle(0), torch.zeros(1, 1, 64, 64)], dim=1)
    rec = torch.cat([speckle(1), torch.ones(1, 1, 64, 64)], dim=1).requires_grad_(True)
    loss = spectral_loss(rec, x)
    loss.backward()
    assert loss == spectral_loss(rec[:, :1], x[:, :1]) and rec.grad[:, :1].abs().sum() > 0 and rec.grad[:, 1:].abs().sum() == 0
