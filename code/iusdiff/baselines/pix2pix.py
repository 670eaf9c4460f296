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
noise source; seeded, so outputs are reproducible. Like the reference's test script, inference
runs one mask at a time (batch norm then normalises by that image's own statistics, as in
training at batch 1), and it leaves the running statistics untouched. ``test_mode = "eval"``
(the reference's ``--eval``) uses the running statistics and switches dropout off instead.

Training (:class:`Pix2PixTask`, run by :func:`iusdiff.generator.training.train`): the reference's update
order (discriminator step on the detached fake, then generator step); the dropout of step s is
drawn from a generator seeded by (seed, step), so an interrupted run resumes exactly. The
schedule is counted in epochs (paper profile: 100 + 100) or, for the short CPU profiles, in
steps. The kept model is the one with the lowest validation L1 (mean absolute difference in
[-1, 1] between the generated and real validation images, generated as at test time); the
reference keeps its last epoch.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn

from iusdiff.errors import InputError
from iusdiff.generator.data import STREAM_DROP, STREAM_VALIDATION, FoldData, image_tensor, mask_tensor, seed_for, to_uint8
from iusdiff.io import write_json

if TYPE_CHECKING:  # tasks imports diffusers; only its batch source is needed here
    from iusdiff.generator.tasks import PairedBatches

L1_WEIGHT = 100.0
LEARNING_RATE = 2e-4
BETAS = (0.5, 0.999)
TEST_MODES = ("train", "eval")
WEIGHTS_FILE = "generator.safetensors"
CONFIG_FILE = "config.json"


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


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule


@dataclass(frozen=True)
class Schedule:
    """Constant then linear decay, in units of ``unit_steps`` optimisation steps (an epoch or one step)."""

    constant: int
    decay: int
    unit_steps: int

    @property
    def steps(self) -> int:
        return (self.constant + self.decay) * self.unit_steps

    def factor(self, step: int) -> float:
        return linear_decay(self.constant, self.decay)(step // self.unit_steps)


def resolve_schedule(cfg: dict, n_train: int) -> Schedule:
    """``constant_epochs``/``decay_epochs`` (the reference's per-epoch rule) or ``constant_steps``/``decay_steps``."""
    if "constant_epochs" in cfg:
        return Schedule(int(cfg["constant_epochs"]), int(cfg["decay_epochs"]), math.ceil(n_train / cfg["batch_size"]))
    return Schedule(int(cfg["constant_steps"]), int(cfg["decay_steps"]), 1)


# ---------------------------------------------------------------------------------------------
# Inference


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG (what ``nn.Dropout`` draws from) inside the block only."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def frozen_running_stats(module: nn.Module) -> Iterator[None]:
    """Batch norm without updating its running statistics (inference must not change the model)."""
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    tracked = [m.track_running_stats for m in norms]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, flag in zip(norms, tracked):
            m.track_running_stats = flag


def check_test_mode(test_mode: str) -> str:
    """The profile's ``test_mode``, checked before any work (a typo must not mean "eval")."""
    if test_mode not in TEST_MODES:
        raise InputError(f"[pix2pix] test_mode must be one of {TEST_MODES}, got {test_mode!r}")
    return test_mode


@torch.no_grad()
def translate(generator: UNetGenerator, masks: np.ndarray, seeds: list[int], test_mode: str, device: torch.device) -> np.ndarray:
    """{0,1} masks (N, H, W) -> uint8 images (N, H, W), one mask at a time, dropout seeded by ``seeds``."""
    generator.train(check_test_mode(test_mode) == "train")
    x = mask_tensor(masks) * 2 - 1
    outputs = []
    with frozen_running_stats(generator):
        for mask, seed in zip(x, seeds):
            with seeded(seed, device):
                outputs.append(generator(mask[None].to(device)).cpu())
    return to_uint8(torch.cat(outputs))


# ---------------------------------------------------------------------------------------------
# Model files: safetensors weights + the architecture as JSON


def save_generator(generator: UNetGenerator, ngf: int, folder: Path) -> None:
    weights = {k: v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    save_file(weights, folder / WEIGHTS_FILE)
    write_json(folder / CONFIG_FILE, {"levels": generator.levels, "ngf": ngf, "in_channels": 1, "out_channels": 1})


def load_generator(folder: Path) -> UNetGenerator:
    """A trained generator from ``folder`` (written by :func:`save_generator`)."""
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise InputError(f"{folder / name}: not found (train the Pix2Pix model first: code/train_pix2pix.py)")
    config = json.loads((folder / CONFIG_FILE).read_text())
    generator = UNetGenerator(config["levels"], config["in_channels"], config["out_channels"], config["ngf"])
    generator.load_state_dict(load_file(folder / WEIGHTS_FILE))
    return generator


# ---------------------------------------------------------------------------------------------
# Training task for iusdiff.generator.training.train


class Pix2PixTask:
    """Mask -> image with a PatchGAN; ``batches`` yields augmented (image, mask) pairs per step."""

    def __init__(
        self,
        batches: PairedBatches,
        val: FoldData,
        cfg: dict,
        schedule: Schedule,
        size: int,
        accelerator: Accelerator,
    ) -> None:
        self.batches, self.cfg, self.schedule, self.acc = batches, cfg, schedule, accelerator
        generator = UNetGenerator(levels_for(size), ngf=cfg["ngf"])
        disc = PatchDiscriminator(ndf=cfg["ndf"], n_layers=cfg["disc_layers"])
        init_weights(generator)
        init_weights(disc)
        opt_g = torch.optim.Adam(generator.parameters(), lr=LEARNING_RATE, betas=BETAS, fused=True)
        opt_d = torch.optim.Adam(disc.parameters(), lr=LEARNING_RATE, betas=BETAS, fused=True)
        self.generator, self.disc, self.opt_g, self.opt_d = accelerator.prepare(generator, disc, opt_g, opt_d)
        self.val_masks, self.val_images = val.masks, image_tensor(val.images)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def _set_learning_rate(self, step: int) -> float:
        """Constant then linear decay, a function of the step (replaces the loop's constant rate)."""
        lr = LEARNING_RATE * self.schedule.factor(step)
        for optimizer in (self.opt_g, self.opt_d):
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr

    def train_step(self, step: int) -> dict[str, float]:
        lr = self._set_learning_rate(step)
        images, masks = self.batches.batch(step)
        real, condition = images.to(self.acc.device), (masks * 2 - 1).to(self.acc.device)
        self.generator.train()
        drop_seed = seed_for(self.batches.seed, step, self.batches.rank, STREAM_DROP)
        with seeded(drop_seed, self.acc.device):
            fake = self.generator(condition)
        self.disc.requires_grad_(True)
        d_loss = discriminator_loss(self.disc(condition, real), self.disc(condition, fake.detach()))
        self.opt_d.zero_grad(set_to_none=True)
        self.acc.backward(d_loss)
        self.opt_d.step()
        self.disc.requires_grad_(False)
        g_loss, g_gan, g_l1 = generator_loss(self.disc(condition, fake), fake, real)
        self.opt_g.zero_grad(set_to_none=True)
        self.acc.backward(g_loss)
        self.opt_g.step()
        return {"g_loss": g_loss.item(), "g_gan": g_gan.item(), "g_l1": g_l1.item(), "d_loss": d_loss.item(), "lr": lr}

    def validate(self) -> float:
        """Mean L1 in [-1, 1] between generated and real validation images, generated as at test time."""
        seeds = [seed_for(self.batches.seed, STREAM_VALIDATION, index) for index in range(len(self.val_masks))]
        generator = self.acc.unwrap_model(self.generator)
        fake = image_tensor(translate(generator, self.val_masks, seeds, self.cfg["test_mode"], self.acc.device))
        return float((fake - self.val_images).abs().mean())

    def save_model(self, folder: Path) -> None:
        save_generator(self.acc.unwrap_model(self.generator), self.cfg["ngf"], folder)
