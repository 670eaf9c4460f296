"""Pix2Pix baseline (Isola et al. 2017, as configured by its reference implementation's defaults).

Generator: a U-Net of ``log2(size)`` down/up levels (8 at 256 px, the "unet_256"; 6 at 64 px),
4×4 stride-2 convolutions, batch norm, LeakyReLU(0.2) down and ReLU up, skip connections by
concatenation, dropout 0.5 in the decoder levels that run at the widest width (ngf·8) below the
innermost one, tanh output. Discriminator: the 70×70 PatchGAN (three stride-2 layers), fed the
mask and the image concatenated. Weights start from N(0, 0.02) (norm layers N(1, 0.02)).
Objective: vanilla GAN (BCE on logits) + 100·L1 for the generator, half the sum of the real and
fake BCE terms for the discriminator. Adam 2e-4, β1 0.5; constant learning rate for the first
half of the epochs, then linear decay to zero.

Test time follows the reference default (no ``--eval``): the generator stays in training mode,
so batch norm uses the statistics of the batch and dropout stays active as the model's only
noise source; seeded, so outputs are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

L1_WEIGHT = 100.0
LEARNING_RATE = 2e-4
BETAS = (0.5, 0.999)


def _down(in_ch: int, out_ch: int, norm: bool, activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.LeakyReLU(0.2)] if activation else []
    layers.append(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=not norm))
    if norm:
        layers.append(nn.BatchNorm2d(out_ch))
    return nn.Sequential(*layers)


def _up(in_ch: int, out_ch: int, dropout: bool, last: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=last)]
    if last:
        layers.append(nn.Tanh())
    else:
        layers.append(nn.BatchNorm2d(out_ch))
        if dropout:
            layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers)


def _widths(levels: int, ngf: int) -> list[int]:
    """Channel width after each down level: ngf, 2ngf, 4ngf, then 8ngf to the bottom."""
    return [ngf * min(2**i, 8) for i in range(levels)]


class UNetGenerator(nn.Module):
    """Mask (1 channel, [-1, 1]) → image (1 channel, [-1, 1]); input side must be 2**levels."""

    def __init__(self, levels: int, in_channels: int = 1, out_channels: int = 1, ngf: int = 64):
        super().__init__()
        if levels < 5:
            raise ValueError(f"the U-Net needs at least 5 levels (32 px), got {levels}")
        widths = _widths(levels, ngf)
        self.levels = levels
        self.downs = nn.ModuleList()
        previous = in_channels
        for i, width in enumerate(widths):
            outermost, innermost = i == 0, i == levels - 1
            self.downs.append(_down(previous, width, norm=not (outermost or innermost), activation=not outermost))
            previous = width
        self.ups = nn.ModuleList()
        for i in reversed(range(levels)):
            innermost, outermost = i == levels - 1, i == 0
            in_ch = widths[i] if innermost else widths[i] * 2
            out_ch = out_channels if outermost else widths[i - 1]
            # dropout in the ngf·8 decoder levels just above the innermost one (3 at 256 px)
            dropout = not innermost and not outermost and widths[i] == ngf * 8 and i >= levels - 4
            self.ups.append(_up(in_ch, out_ch, dropout=dropout, last=outermost))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 2**self.levels or x.shape[-2] != 2**self.levels:
            raise ValueError(f"input must be {2 ** self.levels}×{2 ** self.levels}, got {tuple(x.shape[-2:])}")
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.ups[0](skips.pop())
        for up in self.ups[1:]:
            x = up(torch.cat([skips.pop(), x], dim=1))
        return x


class PatchDiscriminator(nn.Module):
    """70×70 PatchGAN: one logit per overlapping patch of the (mask, image) pair."""

    def __init__(self, in_channels: int = 2, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = ndf
        for n in range(1, n_layers + 1):
            new_width = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(width, new_width, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(new_width), nn.LeakyReLU(0.2)]
            width = new_width
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([mask, image], dim=1))


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """N(0, 0.02) convolutions with zero bias; batch-norm scale N(1, 0.02), shift 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, gain)
            nn.init.zeros_(layer.bias)


def levels_for(size: int) -> int:
    levels = int(math.log2(size))
    if 2**levels != size:
        raise ValueError(f"image side must be a power of two, got {size}")
    return levels


def generator_loss(d_fake: torch.Tensor, fake: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, GAN term, L1 term) of the generator objective."""
    gan = nn.functional.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    l1 = nn.functional.l1_loss(fake, target)
    return gan + L1_WEIGHT * l1, gan, l1


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    real = nn.functional.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
    fake = nn.functional.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    return 0.5 * (real + fake)


def linear_decay(constant_epochs: int, decay_epochs: int) -> Callable[[int], float]:
    """Learning-rate factor per epoch: 1 for ``constant_epochs``, then linearly towards 0."""
    return lambda epoch: 1.0 - max(0, epoch + 1 - constant_epochs) / float(decay_epochs + 1)
