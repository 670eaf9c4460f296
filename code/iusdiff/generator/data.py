"""Training data for the generators: a fold's slices as tensors, paired augmentation, batches.

Every random draw of a training step comes from a generator seeded by (seed, step, rank), never
from global RNG state. A step's batch, augmentation, noise and timesteps are therefore a pure
function of its number, which is what makes an interrupted run resume into the same loss
sequence without pickling RNG states or data-loader positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from iusdiff.data.slices import SliceDataset, SliceRecord
from iusdiff.errors import InputError

# Streams keep the draws of one step independent of each other (a new draw in one stream
# leaves the others unchanged).
STREAM_BATCH, STREAM_AUGMENT, STREAM_NOISE, STREAM_DROP, STREAM_VALIDATION = range(5)


def seed_for(*keys: int) -> int:
    """A 63-bit seed derived from integers (seed, step, stream, ...) with numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator_for(*keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed_for(*keys))


@dataclass(frozen=True)
class FoldData:
    """One split of a fold in memory: uint8 images and {0,1} masks, (N, H, W)."""

    images: np.ndarray
    masks: np.ndarray
    records: tuple[SliceRecord, ...]

    def __len__(self) -> int:
        return len(self.records)


def load_fold(dataset: SliceDataset, fold: int, part: str) -> FoldData:
    """Read a fold's 'train', 'val' or 'test' slices; an empty split is an input error."""
    records = tuple(dataset.select(fold, part))
    if not records:
        raise InputError(f"{dataset.root}: fold {fold} has no '{part}' slices")
    images = np.stack([dataset.image(r) for r in records])
    masks = np.stack([dataset.mask(r) for r in records])
    return FoldData(images=images, masks=masks, records=records)


def image_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, H, W) in [-1, 1], the VAEs' input range."""
    return torch.from_numpy(images).float().div(127.5).sub(1.0).unsqueeze(1)


def mask_tensor(masks: np.ndarray) -> torch.Tensor:
    """{0,1} (N, H, W) -> float (N, 1, H, W) in {0, 1}, the mask embedding's input."""
    return torch.from_numpy(masks).float().unsqueeze(1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Model output in [-1, 1], (N, 1, H, W) -> uint8 (N, H, W), rounded to nearest."""
    return ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).squeeze(1).cpu().numpy()


def binarise(x: torch.Tensor) -> np.ndarray:
    """Decoded mask in [-1, 1] -> {0,1} uint8 (N, H, W): threshold 0.5 on the [0, 1] scale."""
    return ((x.float() + 1.0) / 2.0 > 0.5).to(torch.uint8).squeeze(1).cpu().numpy()


def batch_indices(seed: int, step: int, batch_size: int, n: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Indices of one process's share of a step's batch: epochs are seeded permutations of n.

    The global batch of step s covers positions [s·B·world, (s+1)·B·world) of the endless
    concatenation of per-epoch permutations; process ``rank`` takes its contiguous B of them.
    """
    start = (step * world + rank) * batch_size
    positions = np.arange(start, start + batch_size)
    epochs = positions // n
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        perm = np.random.Generator(np.random.PCG64(seed_for(seed, int(epoch), STREAM_BATCH))).permutation(n)
        sel = epochs == epoch
        out[sel] = perm[positions[sel] % n]
    return torch.from_numpy(out)


@dataclass(frozen=True)
class Augmentation:
    """On-the-fly augmentation (paper §3.4); each transform is applied with probability ``p``.

    Geometric transforms (rotation, translation, flips) share one draw for image and mask;
    intensity transforms (brightness, contrast, gamma) touch the image only. Ranges follow
    the authors' loader: rotation ±30°, translation ±10 % of the side (25.6 px at 256),
    brightness and contrast factors in [0.5, 1.5], gamma in [0.5, 1.5].
    """

    rotation_deg: float = 30.0
    translate_fraction: float = 0.1
    hflip: bool = True
    vflip: bool = False
    brightness: float = 0.5
    contrast: float = 0.5
    gamma: float = 0.5
    p: float = 0.5

    @classmethod
    def from_profile(cls, section: dict | None) -> Augmentation | None:
        """``None`` (no augmentation) when the profile's section is absent or disabled."""
        if not section or not section.get("enabled", True):
            return None
        return cls(**{k: v for k, v in section.items() if k != "enabled"})


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def _apply(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def affine_thetas(n: int, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) sampling matrices for ``affine_grid`` (normalised coordinates)."""
    angle = torch.where(_apply(n, aug.p, gen), _uniform(n, -aug.rotation_deg, aug.rotation_deg, gen), 0.0)
    shift_on = _apply(n, aug.p, gen)
    shift = torch.where(shift_on[:, None], _uniform(2 * n, -1, 1, gen).view(n, 2) * 2 * aug.translate_fraction, 0.0)
    sx = torch.where(_apply(n, aug.p, gen) & aug.hflip, -1.0, 1.0)
    sy = torch.where(_apply(n, aug.p, gen) & aug.vflip, -1.0, 1.0)
    rad = angle * math.pi / 180
    cos, sin = torch.cos(rad), torch.sin(rad)
    theta = torch.zeros(n, 2, 3)
    # output pixel p samples input at R·S·p - t: rotation by +angle, flips, shift by +t
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, -sin * sy
    theta[:, 1, 0], theta[:, 1, 1] = sin * sx, cos * sy
    theta[:, :, 2] = -shift
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def intensity(images01: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast (around each image's mean) and gamma on images in [0, 1]."""
    n = images01.shape[0]
    one = torch.ones(n)
    b = torch.where(_apply(n, aug.p, gen), _uniform(n, 1 - aug.brightness, 1 + aug.brightness, gen), one)
    c = torch.where(_apply(n, aug.p, gen), _uniform(n, 1 - aug.contrast, 1 + aug.contrast, gen), one)
    g = torch.where(_apply(n, aug.p, gen), _uniform(n, 1 - aug.gamma, 1 + aug.gamma, gen), one)
    x = (images01 * b.view(n, 1, 1, 1)).clamp(0, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * c.view(n, 1, 1, 1) + mean).clamp(0, 1)
    return x.pow(g.view(n, 1, 1, 1))


def augment_pair(
    images: torch.Tensor, masks: torch.Tensor, aug: Augmentation, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment images in [-1, 1] and {0,1} masks, (N, 1, H, W), with one geometric draw each.

    The mask is warped with nearest-neighbour sampling (it stays binary); outside the field
    of view both become background (-1 for images, 0 for masks).
    """
    theta = affine_thetas(images.shape[0], aug, gen)
    warped = warp((images + 1) / 2, theta, "bilinear")
    warped_masks = warp(masks, theta, "nearest")
    return intensity(warped, aug, gen) * 2 - 1, warped_masks


def augment_masks(masks: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Geometric augmentation of masks alone (the mask VAE and mask LDM see no image)."""
    return warp(masks, affine_thetas(masks.shape[0], aug, gen), "nearest")
