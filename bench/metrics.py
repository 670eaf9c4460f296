"""Throughput of the evaluation metrics on this machine.

Prints masks/s for ESD, Dice and HD95 on random star-shaped masks (each compared with a shifted,
dilated copy of itself) at 256 and 64 px, and images/s of the Inception feature extractor on a
small batch. The target is ESD + HD95 on 1000 masks of 256 px in at most 2 s.

    PYTHONPATH=code python bench/metrics.py [--n 1000] [--images 16] [--no-inception]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import cv2
import numpy as np

from iusdiff.evaluation import metrics


def random_masks(n: int, size: int, seed: int) -> list[np.ndarray]:
    """Star-shaped tumour-like masks covering roughly 1–30 % of the image."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(0.0, 2.0 * np.pi, 360, endpoint=False)
    masks = []
    for _ in range(n):
        radius = size * rng.uniform(0.06, 0.3)
        r = radius * (1 + sum(rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 6)) for k in (2, 3, 5, 8)))
        centre = rng.uniform(0.35, 0.65, 2) * size
        pts = np.stack([centre[0] + r * np.cos(theta), centre[1] + r * np.sin(theta)], axis=1)
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [pts.round().astype(np.int32)], 1)
        masks.append(mask)
    return masks


def perturbed(masks: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Each mask shifted by a few pixels and dilated, as a stand-in prediction."""
    rng = np.random.default_rng(seed)
    kernel = np.ones((3, 3), np.uint8)
    out = []
    for mask in masks:
        dy, dx = rng.integers(-3, 4, 2)
        out.append(cv2.dilate(np.roll(mask, (dy, dx), axis=(0, 1)), kernel))
    return out


def rate(fn: Callable[[], object], count: int) -> tuple[float, float]:
    """(seconds, items per second) of one call of ``fn`` processing ``count`` items."""
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return seconds, count / seconds


def mask_rows(n: int, size: int) -> list[tuple[str, int, float, float]]:
    refs = random_masks(n, size, seed=size)
    preds = perturbed(refs, seed=size + 1)
    rows = []
    for name, fn in (
        ("esd", lambda: [metrics.esd(m) for m in refs]),
        ("dice", lambda: [metrics.dice(p, r) for p, r in zip(preds, refs, strict=True)]),
        ("hd95", lambda: [metrics.hd95(p, r) for p, r in zip(preds, refs, strict=True)]),
    ):
        seconds, per_second = rate(fn, n)
        rows.append((f"{name} {size}px", n, seconds, per_second))
    return rows


def inception_rows(n_images: int) -> list[tuple[str, int, float, float]]:
    from iusdiff.evaluation.fid import InceptionFeatures

    start = time.perf_counter()
    extractor = InceptionFeatures(progress=False)
    extractor(np.zeros((1, 256, 256), np.uint8))  # loads and warms up the network
    load = time.perf_counter() - start
    images = np.random.default_rng(0).integers(0, 256, (n_images, 256, 256), dtype=np.uint8)
    seconds, per_second = rate(lambda: extractor(images), n_images)
    print(f"Inception extractor: {extractor.label}")
    return [
        ("inception load+warm-up", 1, load, 1 / load),
        ("inception 256px", n_images, seconds, per_second),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="masks per size")
    parser.add_argument("--images", type=int, default=16, help="images for the Inception timing")
    parser.add_argument("--no-inception", action="store_true", help="skip the Inception timing")
    args = parser.parse_args()

    rows = mask_rows(args.n, 256) + mask_rows(args.n, 64)
    if not args.no_inception:
        rows += inception_rows(args.images)
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'items':>6}  {'seconds':>8}  {'items/s':>9}")
    for name, count, seconds, per_second in rows:
        print(f"{name:<{width}}  {count:>6}  {seconds:>8.3f}  {per_second:>9.1f}")
    esd_hd = sum(r[2] for r in rows if r[0] in ("esd 256px", "hd95 256px"))
    verdict = "meets" if esd_hd <= 2.0 * args.n / 1000 else "misses"
    print(f"ESD + HD95 on {args.n} masks of 256 px: {esd_hd:.2f} s ({verdict} the 2 s per 1000 target)")


if __name__ == "__main__":
    main()
