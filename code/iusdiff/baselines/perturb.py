"""A stand-in generator: real pairs under random elastic and morphological changes.

It exists to exercise every evaluation path (Tables 3–4, Figs. 4/6, the downstream study)
before or without a trained generator, on data with known ground truth. Its outputs follow
the sample contract of ``code/sample.py`` and are always labelled as a stand-in.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

STANDIN_LABEL = "stand-in generator: perturbed real pairs, not a trained model"


def _displacement(rng: np.random.Generator, shape: tuple[int, int], amplitude: float, smooth: float) -> np.ndarray:
    """Smooth random displacement field (2, H, W) in pixels."""
    field = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), smooth) for _ in range(2)])
    return field * (amplitude / max(float(np.abs(field).max()), 1e-12))


def perturb_pair(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, amplitude: float = 0.06, smooth: float = 0.12
) -> tuple[np.ndarray, np.ndarray]:
    """Warp an image and its mask with one elastic field, then grow or shrink the mask by a pixel.

    ``amplitude`` and ``smooth`` are fractions of the image side, so the change looks the same at
    every resolution.
    """
    side = mask.shape[0]
    shift = _displacement(rng, mask.shape, amplitude * side, smooth * side)
    rows, cols = np.indices(mask.shape, dtype=np.float64)
    coords = np.stack([rows + shift[0], cols + shift[1]])
    warped_image = ndimage.map_coordinates(image.astype(np.float64), coords, order=1, mode="reflect")
    warped_mask = ndimage.map_coordinates(mask.astype(np.float64), coords, order=1, mode="constant") > 0.5
    change = rng.integers(-1, 2)
    if change > 0:
        warped_mask = ndimage.binary_dilation(warped_mask)
    elif change < 0:
        eroded = ndimage.binary_erosion(warped_mask)
        warped_mask = eroded if eroded.any() else warped_mask
    return np.clip(np.rint(warped_image), 0, 255).astype(np.uint8), warped_mask.astype(np.uint8)
