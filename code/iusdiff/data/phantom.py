"""A B-mode iUS phantom in the RESECT layout, so the whole pipeline runs without patient data.

Model (documented and simple; no field simulator such as FIELD II is pip-installable here):

1. Geometry (mm): a curvilinear-probe fan whose apex sits above the first depth row; its
   opening narrows towards the ends of the sweep axis, so slices far from the centre of the
   sweep show a narrower sector, as in freehand 3-D reconstructions. Black outside the fan.
2. Echogenicity map: parenchyma with low-frequency texture; bright, thin, curved sulcal
   sheets (zero sets of smooth random fields, shown only where a second field allows); a
   bright cortical arc under the probe; in some cases a falx-like bright sheet and a dark,
   bright-walled ventricle; a hyperechoic glioma: a lobulated ellipsoid whose boundary is
   perturbed at two scales, with a soft edge whose width varies along the boundary and
   infiltrative hyperechoic streaks beyond it. The ground-truth mask is the crisp boundary.
3. Speckle: complex Gaussian scatterers with amplitude sqrt(echogenicity), filtered by an
   anisotropic Gaussian PSF (finer axially than laterally and in elevation); the envelope is
   Rayleigh-distributed and spatially correlated.
4. Depth attenuation after partial time-gain compensation, electronic noise, log compression
   to a 42–50 dB dynamic range, quantised to uint8.

Sizes: 50–72 mm per side at 0.45–0.50 mm (``scale`` divides the voxel count per axis and
multiplies the spacing), so the quarter-extent window spans 12–18 mm and the ~1 mm slice
sampling yields 13–21 slices per case, inside the paper's 13–24.

Everything derives from numpy's PCG64 seeded with (seed, case), so a case's volumes do not
depend on which other cases are generated and are identical on every machine.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from iusdiff.cli import progress
from iusdiff.data.resect import mask_relpath, save_nifti, us_relpath
from iusdiff.data.slices import peak_slice, slice_2d
from iusdiff.data.splits import check_cases
from iusdiff.outputs.layout import RESECT_DIR, RESECT_SEG_DIR

# Independent speckle realisations averaged, as spatial compounding and scanner speckle
# reduction do; it lifts the deep speckle nulls that make raw Rayleigh speckle look like noise.
_COMPOUNDING = 2


@dataclass(frozen=True)
class PhantomCase:
    """One synthetic case: uint8 US volume, {0,1} mask and the NIfTI affine (mm)."""

    case: int
    us: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    spacing: float


def case_rng(seed: int, case: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, case]))


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ~sigma_vox.

    Large kernels are applied on a coarser grid and interpolated up, which keeps a 160³
    volume fast without changing the field's character.
    """
    factor = max(1, int(sigma_vox // 2))
    coarse_shape = tuple(-(-n // factor) + 3 for n in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma_vox / factor, mode="wrap")
    field = ndimage.zoom(coarse, factor, order=1, mode="nearest", grid_mode=False) if factor > 1 else coarse
    field = field[tuple(slice(0, n) for n in shape)]
    return (field - field.mean()) / field.std()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass(frozen=True)
class _Grid:
    """Voxel-centre coordinates in mm (x lateral = i, y depth = j, z sweep = k)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    shape: tuple[int, int, int]
    spacing: float
    extent: tuple[float, float, float]


def _make_grid(rng: np.random.Generator, scale: float) -> _Grid:
    spacing = float(np.float32(rng.uniform(0.45, 0.50) / scale))
    extent_mm = (rng.uniform(55, 72), rng.uniform(50, 70), rng.uniform(50, 72))
    shape = tuple(int(round(e / spacing)) for e in extent_mm)
    extent = tuple(n * spacing for n in shape)
    x = ((np.arange(shape[0]) + 0.5) * spacing - extent[0] / 2)[:, None, None]
    y = ((np.arange(shape[1]) + 0.5) * spacing)[None, :, None]
    z = ((np.arange(shape[2]) + 0.5) * spacing - extent[2] / 2)[None, None, :]
    return _Grid(x, y, z, shape, spacing, extent)  # type: ignore[arg-type]


def _fan(rng: np.random.Generator, g: _Grid) -> tuple[np.ndarray, np.ndarray, float]:
    """Probe footprint: boolean support, depth along the beam (mm), apex offset."""
    apex = rng.uniform(10, 25)
    half_angle = rng.uniform(0.50, 0.65)
    radius = np.hypot(g.x, g.y + apex)
    theta = np.arctan2(g.x, g.y + apex)
    opening = half_angle * (1 - 0.25 * (g.z / (g.extent[2] / 2)) ** 2)
    max_radius = apex + g.extent[1] * rng.uniform(0.88, 0.98)
    support = (np.abs(theta) < opening) & (radius < max_radius)
    return support, radius - apex, apex


def _sheet(field: np.ndarray, width: float) -> np.ndarray:
    """A thin bright layer along the zero set of a smooth field."""
    return np.exp(-((field / width) ** 2))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def _tumour(rng: np.random.Generator, g: _Grid, support: np.ndarray):
    """Crisp mask, soft membership and an infiltration map of a lobulated glioma."""
    sp = g.spacing
    window_mm = np.floor(g.shape[2] * sp / 4)
    centre = (
        rng.uniform(-0.12, 0.12) * g.extent[0],
        rng.uniform(0.38, 0.52) * g.extent[1],
        rng.uniform(-0.05, 0.05) * g.extent[2],
    )
    area = rng.uniform(0.05, 0.20) * g.extent[0] * g.extent[1]
    aspect = np.exp(rng.uniform(-1.2, 1.2))
    rx, ry = np.sqrt(area / np.pi * aspect), np.sqrt(area / np.pi / aspect)
    ry = min(ry, 0.9 * centre[1])
    rz = rng.uniform(window_mm / 2 + 3, window_mm / 2 + 9)
    phi = rng.uniform(0, np.pi)
    dx, dy, dz = g.x - centre[0], g.y - centre[1], g.z - centre[2]
    u = dx * np.cos(phi) + dy * np.sin(phi)
    v = -dx * np.sin(phi) + dy * np.cos(phi)
    rho = np.sqrt((u / rx) ** 2 + (v / ry) ** 2 + (dz / rz) ** 2)

    lobes = smooth_field(rng, g.shape, 5.0 / sp)
    rough = smooth_field(rng, g.shape, 1.2 / sp)
    level = 1 + rng.uniform(0.2, 0.4) * lobes + rng.uniform(0.04, 0.07) * rough
    mask = ndimage.binary_fill_holes(_largest_component((rho < level) & support))

    edge_width = rng.uniform(0.03, 0.07) * (1 + 0.9 * np.tanh(smooth_field(rng, g.shape, 6.0 / sp)))
    membership = _sigmoid((level - rho) / edge_width)
    streaks = smooth_field(rng, g.shape, 1.5 / sp)
    infiltration = 0.45 * _sigmoid(4 * streaks - 2) * _sigmoid((level + 0.3 - rho) / 0.05)
    return mask.astype(np.uint8), membership, infiltration


def _echogenicity(rng: np.random.Generator, g: _Grid, depth: np.ndarray) -> np.ndarray:
    """Background tissue: parenchyma, sulci, cortical arc, optional falx and ventricle."""
    sp = g.spacing
    echo = np.exp(0.35 * smooth_field(rng, g.shape, 3.0 / sp) + 0.25 * smooth_field(rng, g.shape, 8.0 / sp))
    for _ in range(2):
        folds = smooth_field(rng, g.shape, 6.0 / sp)
        gate = _sigmoid(2.5 * smooth_field(rng, g.shape, 10.0 / sp) - 0.5)
        echo += rng.uniform(8, 14) * _sheet(folds, 0.2) * gate
    echo += 4.0 * np.exp(-(((depth - 1.5) / 0.8) ** 2))
    if rng.uniform() < 0.5:
        x0 = rng.uniform(-0.3, 0.3) * g.extent[0]
        tilt = rng.uniform(-0.25, 0.25)
        bend = rng.uniform(-0.1, 0.1) * g.extent[0]
        falx_x = x0 + tilt * g.y + 0.15 * g.z * tilt + bend * (g.y / g.extent[1]) ** 2
        start = _sigmoid((g.y - rng.uniform(0.1, 0.4) * g.extent[1]) / 2.0)
        echo += 8.0 * np.exp(-(((g.x - falx_x) / 0.6) ** 2)) * start
    if rng.uniform() < 0.7:
        centre = (
            rng.choice([-1, 1]) * rng.uniform(0.05, 0.25) * g.extent[0],
            rng.uniform(0.70, 0.85) * g.extent[1],
            rng.uniform(-0.1, 0.1) * g.extent[2],
        )
        radii = (rng.uniform(7, 13), rng.uniform(3, 6), rng.uniform(9, 15))
        rho = np.sqrt(
            ((g.x - centre[0]) / radii[0]) ** 2 + ((g.y - centre[1]) / radii[1]) ** 2 + ((g.z - centre[2]) / radii[2]) ** 2
        )
        rho = rho * (1 + 0.15 * smooth_field(rng, g.shape, 4.0 / sp))
        inside = _sigmoid((1 - rho) / 0.04)
        echo = echo * (1 - 0.95 * inside) + 5.0 * np.exp(-(((rho - 1) / 0.06) ** 2))
    return np.clip(echo, 0.05, None)


def _bmode(rng: np.random.Generator, g: _Grid, echo: np.ndarray, depth: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Speckle formation, attenuation and log compression to uint8."""
    sp = g.spacing
    psf_sigma = (0.9 / sp, 0.4 / sp, 1.0 / sp)
    amplitude = np.sqrt(echo)
    envelope = np.zeros(g.shape)
    for _ in range(_COMPOUNDING):
        real = ndimage.gaussian_filter(amplitude * rng.standard_normal(g.shape), psf_sigma)
        imag = ndimage.gaussian_filter(amplitude * rng.standard_normal(g.shape), psf_sigma)
        envelope += np.hypot(real, imag) / _COMPOUNDING
    envelope = ndimage.gaussian_filter(envelope, 0.3 / sp)
    envelope /= np.median(envelope[support])
    envelope *= 10 ** (-rng.uniform(0.10, 0.20) * depth / 20)
    envelope += 0.03 * np.abs(rng.standard_normal(g.shape))
    decibels = 20 * np.log10(envelope + 1e-6)
    reference = np.percentile(decibels[support], 99.5)
    dynamic_range = rng.uniform(26, 32)
    grey = np.clip((decibels - (reference - dynamic_range)) / dynamic_range, 0, 1) ** rng.uniform(1.6, 2.0)
    return np.where(support, np.rint(255 * grey), 0).astype(np.uint8)


def generate_case(case: int, seed: int = 0, scale: float = 1.0) -> PhantomCase:
    """One phantom case; deterministic in (seed, case, scale)."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    rng = case_rng(seed, case)
    grid = _make_grid(rng, scale)
    support, depth, _ = _fan(rng, grid)
    echo = _echogenicity(rng, grid, depth)
    mask, membership, infiltration = _tumour(rng, grid, support)
    contrast = rng.uniform(4.0, 9.0)
    texture = 1 + 0.25 * smooth_field(rng, grid.shape, 2.0 / grid.spacing)
    tumour_echo = np.clip(echo, 0.6, 1.6) * contrast * texture
    echo = echo * (1 - membership) + tumour_echo * membership + infiltration * (contrast - 1) * (1 - membership)
    us = _bmode(rng, grid, np.clip(echo, 0.05, None), depth, support)
    sp = grid.spacing
    origin = (-grid.extent[0] / 2, 0.0, -grid.extent[2] / 2)
    affine = np.array(
        [[sp, 0, 0, origin[0]], [0, sp, 0, origin[1]], [0, 0, sp, origin[2]], [0, 0, 0, 1]], dtype=np.float64
    )
    return PhantomCase(case=case, us=us, mask=mask, affine=affine, spacing=sp)


def write_case(root: Path, case: int, seed: int, scale: float) -> tuple[int, np.ndarray, np.ndarray]:
    """Write one case in the RESECT layout below ``root``; return its peak slice for a montage."""
    phantom = generate_case(case, seed, scale)
    save_nifti(root / RESECT_DIR / "NIFTI" / us_relpath(case), phantom.us, phantom.affine)
    save_nifti(root / RESECT_SEG_DIR / mask_relpath(case), phantom.mask, phantom.affine)
    k = peak_slice(phantom.mask)
    return case, slice_2d(phantom.us, k), slice_2d(phantom.mask, k)


def write_phantom(root: Path, cases, seed: int, scale: float, workers: int = 1) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Write all cases (in parallel processes when asked); results come back in case order."""
    cases = check_cases(cases)
    jobs = [(root, case, seed, scale) for case in cases]
    if workers <= 1:
        return [write_case(*job) for job in progress(jobs, desc="phantom", unit="case")]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(write_case, *job) for job in jobs]
        return [f.result() for f in progress(futures, desc="phantom", unit="case")]
