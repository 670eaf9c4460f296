"""The sample contract shared by every generator and every consumer of generated pairs.

A generated set for one fold lives in ``<root>/fold{K}/`` (iusdiff.outputs.layout.fold_dir):
``masks/{index:05d}.png`` ({0,1}), ``images/{index:05d}.png`` (uint8; may be absent for
mask-only sets), and ``manifest.csv`` with columns ``index, seed, mask, image, sampler, steps,
w, empty`` (paths relative to the fold folder; ``empty`` = 1 when the mask has no tumour pixel).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from iusdiff.errors import InputError
from iusdiff.io import atomic_path, save_png
from iusdiff.outputs.layout import fold_dir

MANIFEST_FIELDS = ("index", "seed", "mask", "image", "sampler", "steps", "w", "empty")


@dataclass(frozen=True)
class Sample:
    index: int
    seed: int
    mask: str
    image: str
    sampler: str
    steps: int
    w: float
    empty: int


def write_manifest(path: Path, samples: list[Sample]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)


def contract_files(index: int) -> tuple[str, str]:
    """The contract's (mask, image) paths of pair ``index``, relative to the fold folder."""
    return f"masks/{index:05d}.png", f"images/{index:05d}.png"


def write_pairs(
    folder: Path,
    masks: np.ndarray,
    images: np.ndarray,
    seeds: Sequence[int],
    sampler: str,
    steps: int,
    w: float,
    files: Callable[[int], tuple[str, str]] = contract_files,
) -> list[Sample]:
    """Save {0,1} masks and uint8 images (n, H, W) as PNGs at ``files(index)`` (mask, image)
    and their ``manifest.csv`` (empty masks flagged) in ``folder``; returns the manifest rows."""
    samples = []
    for index, (mask, image, seed) in enumerate(zip(masks, images, seeds, strict=True)):
        mask_rel, image_rel = files(index)
        save_png(folder / mask_rel, mask)
        save_png(folder / image_rel, image)
        samples.append(Sample(index, int(seed), mask_rel, image_rel, sampler, int(steps), float(w), int(not mask.any())))
    write_manifest(folder / "manifest.csv", samples)
    return samples


def read_manifest(root: str | Path, fold: int) -> list[Sample]:
    """The fold's samples in index order; a missing or malformed manifest is an InputError."""
    path = fold_dir(root, fold) / "manifest.csv"
    if not path.is_file():
        raise InputError(f"fold {fold}: generated samples not found ({path} is missing)")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(MANIFEST_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{path}: missing columns {sorted(missing)}")
        samples = [
            Sample(
                index=int(r["index"]),
                seed=int(r["seed"]),
                mask=r["mask"],
                image=r["image"],
                sampler=r["sampler"],
                steps=int(r["steps"]),
                w=float(r["w"]),
                empty=int(r["empty"]),
            )
            for r in reader
        ]
    return sorted(samples, key=lambda s: s.index)
