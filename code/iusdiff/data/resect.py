"""Reading RESECT pre-resection iUS volumes and RESECT-SEG tumour masks, with checks.

Layouts accepted (the public downloads unchanged):
  US:   <root>/NIFTI/CaseN/US/CaseN-US-before.nii.gz   or   <root>/CaseN/US/CaseN-US-before.nii.gz
  mask: <seg>/CaseN/CaseN-US-before-tumor.nii.gz
Every problem raises InputError naming the case and the file. ``check_case_files`` finds the
broken ones before any work without decoding voxels (see ``check_nifti``).
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from iusdiff.errors import InputError

AFFINE_ATOL_MM = 1e-3
ISOTROPY_RTOL = 1e-3
# What nibabel, gzip and zlib raise on an unreadable, truncated or foreign file.
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError)


@dataclass(frozen=True)
class CaseVolumes:
    """One case's US volume (uint8) and tumour mask ({0,1} uint8) on the same grid."""

    case: int
    us: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    us_path: Path
    mask_path: Path


def us_relpath(case: int) -> Path:
    """Where a case's US volume sits below ``<root>/NIFTI`` in the RESECT download."""
    return Path(f"Case{case}") / "US" / f"Case{case}-US-before.nii.gz"


def mask_relpath(case: int) -> Path:
    """Where a case's tumour mask sits below the RESECT-SEG root."""
    return Path(f"Case{case}") / f"Case{case}-US-before-tumor.nii.gz"


def save_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write a NIfTI-1 volume in mm with scanner qform/sform (gzip is deterministic in nibabel)."""
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def us_path(resect_root: str | Path, case: int) -> Path:
    """The US volume of a case; both published layouts are accepted."""
    root = Path(resect_root)
    name = us_relpath(case)
    for candidate in (root / "NIFTI" / name, root / name):
        if candidate.is_file():
            return candidate
    raise InputError(
        f"Case{case}: US volume not found (looked for {root / 'NIFTI' / name} and {root / name})"
    )


def mask_path(seg_root: str | Path, case: int) -> Path:
    path = Path(seg_root) / mask_relpath(case)
    if not path.is_file():
        raise InputError(f"Case{case}: tumour mask not found at {path}")
    return path


def _check_volume_shape(shape: tuple[int, ...], case: int, what: str, path: Path) -> None:
    if len(shape) != 3:
        raise InputError(f"Case{case}: {what} {path} must be a 3-D volume, got shape {shape}")


def _read_nifti(path: Path, case: int, what: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Load voxels, affine and header spacing; any decoding failure names the file."""
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except READ_ERRORS as exc:
        raise InputError(f"Case{case}: cannot read {what} {path}: {exc}") from None
    data = np.squeeze(data)
    _check_volume_shape(data.shape, case, what, path)
    return data, np.asarray(image.affine, dtype=np.float64), _stored_spacing(path, type(image.header))


def _decompressed_size(path: Path, expected: int) -> int:
    """How many bytes a ``.nii.gz`` holds once decompressed: the count in its gzip trailer
    (ISIZE, the length mod 2**32) when that agrees with ``expected``, else counted by
    decompressing it all (a stream cut short then raises EOFError). A truncated file almost
    never ends in the right count, so a sound file costs a 4-byte read, a suspect one a full one."""
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        if int.from_bytes(handle.read(4), "little") == expected % 2**32:
            return expected
    size = 0
    with gzip.open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            size += len(block)
    return size


def check_nifti(path: Path, case: int, what: str) -> None:
    """Open a NIfTI file, read its header and shape, and check that all the voxels the header
    describes are there, without decoding them: a 0-byte, truncated or foreign file fails before
    any work, naming the file. (Corruption inside an intact-length file shows when the voxels are
    read, by the gzip checksum, again naming the file.)"""
    try:
        voxels = nib.load(str(path)).dataobj
        expected = int(voxels.offset) + int(np.prod(voxels.shape)) * voxels.dtype.itemsize
        stored = _decompressed_size(path, expected)
    except READ_ERRORS as exc:
        raise InputError(f"Case{case}: cannot read {what} {path}: {exc}") from None
    if stored < expected:
        raise InputError(f"Case{case}: {what} {path} is truncated: it holds {stored} bytes, its header describes {expected}")
    _check_volume_shape(tuple(n for n in voxels.shape if n != 1), case, what, path)


def check_case_files(resect_root: str | Path, seg_root: str | Path, case: int) -> None:
    """Before any work: a case's US volume and tumour mask exist, open, and hold every voxel."""
    check_nifti(us_path(resect_root, case), case, "US volume")
    check_nifti(mask_path(seg_root, case), case, "tumour mask")


def _stored_spacing(path: Path, header_class) -> tuple[float, float, float]:
    """pixdim[1:4] exactly as stored (float32 widened to float64, as SimpleITK returns it).

    nibabel's loader silently replaces zero pixdims by 1 and negative ones by their absolute
    value; reading the raw header keeps such broken spacings visible so they can be rejected.
    """
    with ImageOpener(str(path)) as handle:
        header = header_class.from_fileobj(handle, check=False)
    return tuple(float(z) for z in header["pixdim"][1:4])


def check_spacing(spacing: tuple[float, ...], case: int, path: Path) -> None:
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise InputError(f"Case{case}: non-positive voxel spacing {spacing} in {path}")
    if max(spacing) / min(spacing) - 1 > ISOTROPY_RTOL:
        raise InputError(f"Case{case}: voxel spacing {spacing} in {path} is not isotropic")


def to_uint8(volume: np.ndarray) -> np.ndarray:
    """US intensities as 8-bit grey levels.

    RESECT stores uint8 volumes; they are kept as they are (the authors saved them to PNG
    unchanged). Other inputs already within [0, 255] are rounded; anything else is min-max
    scaled over the whole volume.
    """
    if volume.dtype == np.uint8:
        return volume
    values = volume.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 255:
        return np.rint(values).astype(np.uint8)
    if high == low:
        return np.zeros(volume.shape, dtype=np.uint8)
    return np.rint((values - low) / (high - low) * 255).astype(np.uint8)


def binary_mask(mask: np.ndarray, case: int, path: Path) -> np.ndarray:
    """Accept {0,1} or {0,255} masks; anything else is an error naming the values."""
    values = np.unique(mask)
    if np.isin(values, (0, 1)).all():
        binary = mask.astype(np.uint8)
    elif np.isin(values, (0, 255)).all():
        binary = (mask > 127).astype(np.uint8)
    else:
        shown = ", ".join(f"{v:g}" for v in values[:6])
        raise InputError(f"Case{case}: mask {path} is not binary (values {shown}{', ...' if len(values) > 6 else ''})")
    if not binary.any():
        raise InputError(f"Case{case}: tumour mask {path} is empty")
    return binary


def load_case(resect_root: str | Path, seg_root: str | Path, case: int) -> CaseVolumes:
    """Load and cross-check one case: same shape and affine, isotropic spacing, binary mask."""
    us_file, mask_file = us_path(resect_root, case), mask_path(seg_root, case)
    us, us_affine, spacing = _read_nifti(us_file, case, "US volume")
    mask, mask_affine, _ = _read_nifti(mask_file, case, "tumour mask")
    check_spacing(spacing, case, us_file)
    if mask.shape != us.shape:
        raise InputError(f"Case{case}: mask {mask_file} has shape {mask.shape}, US volume has {us.shape}")
    if not np.allclose(mask_affine, us_affine, rtol=0, atol=AFFINE_ATOL_MM):
        raise InputError(f"Case{case}: mask {mask_file} affine differs from the US volume's affine")
    return CaseVolumes(
        case=case,
        us=to_uint8(us),
        mask=binary_mask(mask, case, mask_file),
        affine=us_affine,
        spacing=spacing,  # type: ignore[arg-type]
        us_path=us_file,
        mask_path=mask_file,
    )
