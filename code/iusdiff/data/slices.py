"""Slice selection (paper §3.2, SPEC §3) and the prepared 2-D dataset.

For each case: the slice k* along the third array axis with the most tumour voxels, a window
of a quarter of the volume's extent along that axis centred on it, slices every ~1 mm in the
window, tumour-free ones dropped. The arithmetic follows the authors' code, with the spacing
as the NIfTI header stores it (float32 widened to float64); float32 rounding matters, e.g.
0.2 mm is stored as 0.20000000298..., so int(1/0.2) is 4, not 5.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from iusdiff.data.resect import CaseVolumes
from iusdiff.errors import InputError
from iusdiff.io import atomic_path, load_mask_png, load_png, save_png, sha256_file, write_json

MANIFEST_FIELDS = (
    "subject",
    "slice_index",
    "position_mm",
    "tumour_fraction",
    "image",
    "mask",
    "image_sha256",
    "mask_sha256",
)


def check_size(size: int) -> int:
    if size < 32 or size & (size - 1):
        raise InputError(f"--size must be a power of two >= 32, got {size}")
    return size


def peak_slice(mask: np.ndarray) -> int:
    """k* = the slice with the most tumour voxels; argmax keeps the lowest index on ties."""
    return int(np.argmax(mask.reshape(-1, mask.shape[2]).sum(axis=0)))


def candidate_slices(n_k: int, spacing_k: float, k_star: int) -> list[int]:
    """Indices every ~1 mm in a quarter-extent window around k*, clipped to the volume."""
    window_mm = math.floor(n_k * spacing_k / 4)
    half = int(window_mm / spacing_k) // 2
    step = max(1, int(1.0 / spacing_k))
    return [k for k in range(k_star - half, k_star + half + 1, step) if 0 <= k < n_k]


def select_slices(mask: np.ndarray, spacing_k: float) -> list[int]:
    """The selected slice indices of one case (tumour-free candidates dropped)."""
    k_star = peak_slice(mask)
    return [k for k in candidate_slices(mask.shape[2], spacing_k, k_star) if mask[:, :, k].any()]


def slice_2d(volume: np.ndarray, k: int) -> np.ndarray:
    """The k-th slice as SimpleITK presents it: rows follow the j axis."""
    return np.ascontiguousarray(volume[:, :, k].T)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to size×size (aspect ratio not kept), antialiased like PIL/torchvision."""
    return np.asarray(Image.fromarray(image, mode="L").resize((size, size), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a {0,1} mask (pixel-centre convention of PIL)."""
    return np.asarray(Image.fromarray(mask, mode="L").resize((size, size), Image.Resampling.NEAREST))


@dataclass(frozen=True)
class SliceRecord:
    subject: int
    slice_index: int
    position_mm: float
    tumour_fraction: float
    image: str
    mask: str
    image_sha256: str
    mask_sha256: str


def write_case_slices(volumes: CaseVolumes, out_dir: Path, size: int) -> tuple[list[SliceRecord], list[int]]:
    """Select, resize and write one case's slices; return their manifest rows and the slices
    dropped because their tumour vanished in the resize (a sliver thinner than a pixel)."""
    spacing_k = volumes.spacing[2]
    records, vanished = [], []
    for k in select_slices(volumes.mask, spacing_k):
        stem = f"case{volumes.case:02d}_k{k:04d}"
        mask = resize_mask(slice_2d(volumes.mask, k), size)
        if not mask.any():
            vanished.append(k)
            continue
        image = resize_image(slice_2d(volumes.us, k), size)
        image_rel, mask_rel = f"images/{stem}.png", f"masks/{stem}.png"
        save_png(out_dir / image_rel, image)
        save_png(out_dir / mask_rel, mask)
        records.append(
            SliceRecord(
                subject=volumes.case,
                slice_index=k,
                position_mm=round(k * spacing_k, 4),
                tumour_fraction=round(float(mask.mean()), 6),
                image=image_rel,
                mask=mask_rel,
                image_sha256=sha256_file(out_dir / image_rel),
                mask_sha256=sha256_file(out_dir / mask_rel),
            )
        )
    return records, vanished


def write_manifest(path: Path, records: list[SliceRecord]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))


def write_splits(path: Path, splits: dict) -> None:
    write_json(path, splits)


# ---------------------------------------------------------------------------------------------
# Reading a prepared dataset (used by every later stage)


@dataclass(frozen=True)
class SliceDataset:
    """A prepared slices folder: manifest rows plus the splits."""

    root: Path
    records: tuple[SliceRecord, ...]
    splits: dict

    def subjects(self, fold: int, part: str) -> list[int]:
        """Subjects of ``part`` ('train', 'val' or 'test') for a fold (1-based)."""
        if part == "test":
            return list(self.splits["test"])
        for entry in self.splits["folds"]:
            if entry["fold"] == fold:
                return list(entry[part])
        raise InputError(f"{self.root / 'splits.json'}: no fold {fold}")

    def select(self, fold: int, part: str) -> list[SliceRecord]:
        wanted = set(self.subjects(fold, part))
        return [r for r in self.records if r.subject in wanted]

    def image(self, record: SliceRecord) -> np.ndarray:
        return load_png(self.root / record.image)

    def mask(self, record: SliceRecord) -> np.ndarray:
        return load_mask_png(self.root / record.mask)


def load_dataset(root: str | Path) -> SliceDataset:
    """Open a folder written by prepare_data.py; errors name the missing file."""
    root = Path(root)
    manifest, splits_file = root / "slices.csv", root / "splits.json"
    for path in (manifest, splits_file):
        if not path.is_file():
            raise InputError(f"{path}: not found (run code/prepare_data.py first)")
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = tuple(
        SliceRecord(
            subject=int(r["subject"]),
            slice_index=int(r["slice_index"]),
            position_mm=float(r["position_mm"]),
            tumour_fraction=float(r["tumour_fraction"]),
            image=r["image"],
            mask=r["mask"],
            image_sha256=r["image_sha256"],
            mask_sha256=r["mask_sha256"],
        )
        for r in rows
    )
    with open(splits_file) as handle:
        splits = json.load(handle)
    return SliceDataset(root=root, records=records, splits=splits)
