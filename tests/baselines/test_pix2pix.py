"""Pix2Pix networks: shapes, dropout placement, receptive field, and one step lowering L1."""

from __future__ import annotations

import pytest
import torch

from iusdiff.baselines.pix2pix import (
    BETAS,
    LEARNING_RATE,
    PatchDiscriminator,
    UNetGenerator,
    discriminator_loss,
    generator_loss,
    init_weights,
    levels_for,
    linear_decay,
)


@pytest.mark.parametrize("size", [32, 64])
def test_generator_and_discriminator_shapes(size):
    torch.manual_seed(0)
    generator = UNetGenerator(levels_for(size), ngf=8)
    mask = torch.rand(2, 1, size, size) * 2 - 1
    fake = generator(mask)
    assert fake.shape == (2, 1, size, size) and float(fake.detach().abs().max()) <= 1.0
    logits = PatchDiscriminator(ndf=8)(mask, fake)
    # three stride-2 convs then two stride-1 4x4 convs with padding 1: side/8 - 2
    assert logits.shape == (2, 1, size // 8 - 2, size // 8 - 2)
    with pytest.raises(ValueError, match=f"input must be {size}"):
        generator(torch.zeros(1, 1, size // 2, size // 2))


def test_unet_256_matches_the_reference_layout():
    generator = UNetGenerator(levels_for(256))
    assert generator.levels == 8
    dropouts = [i for i, up in enumerate(generator.ups) if any(isinstance(m, torch.nn.Dropout) for m in up)]
    assert dropouts == [1, 2, 3]  # the three ngf·8 decoder levels below the innermost
    assert generator.downs[-1][-1].out_channels == 512 and generator.ups[-1][-1].__class__ is torch.nn.Tanh


def test_patchgan_receptive_field_is_70():
    disc = PatchDiscriminator(ndf=4).eval()
    init_weights(disc)
    x = torch.zeros(1, 1, 140, 140, requires_grad=True)
    out = disc(x, torch.zeros_like(x))
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1)).flatten()
    assert int(rows.max() - rows.min() + 1) == 70


def test_one_optimisation_step_lowers_l1_on_a_fixed_batch():
    torch.manual_seed(0)
    generator, disc = UNetGenerator(levels_for(32), ngf=8), PatchDiscriminator(ndf=8)
    init_weights(generator)
    init_weights(disc)
    opt_g = torch.optim.Adam(generator.parameters(), lr=LEARNING_RATE * 5, betas=BETAS)
    opt_d = torch.optim.Adam(disc.parameters(), lr=LEARNING_RATE, betas=BETAS)
    mask = (torch.rand(4, 1, 32, 32) > 0.5).float() * 2 - 1
    target = torch.tanh(mask * 0.8 + 0.1)

    def l1_now() -> float:
        torch.manual_seed(1)  # same dropout draw before and after
        with torch.no_grad():
            return float(torch.nn.functional.l1_loss(generator(mask), target))

    before = l1_now()
    for _ in range(3):
        fake = generator(mask)
        opt_d.zero_grad()
        discriminator_loss(disc(mask, target), disc(mask, fake.detach())).backward()
        opt_d.step()
        opt_g.zero_grad()
        total, gan, l1 = generator_loss(disc(mask, fake), fake, target)
        assert torch.isclose(total, gan + 100 * l1)
        total.backward()
        opt_g.step()
    assert l1_now() < before


def test_learning_rate_constant_then_linear_to_zero():
    factor = linear_decay(100, 100)
    assert factor(0) == factor(99) == 1.0
    assert factor(100) == pytest.approx(1 - 1 / 101)
    assert factor(199) == pytest.approx(1 / 101)
