"""Shared fixtures: the repository, script runner, and tiny RESECT-layout volumes."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iusdiff.data.resect import mask_relpath, save_nifti, us_relpath
from iusdiff.generator.data import FoldData

REPO = Path(__file__).resolve().parents[1]


def _script_command(script: str, args, extra_env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "code"), IUSDIFF_PYTHON=sys.executable, **(extra_env or {}))
    path = REPO / script if script.endswith(".sh") else REPO / "code" / script
    command = [str(path)] if script.endswith(".sh") else [sys.executable, str(path)]
    return [*command, *map(str, args)], env


def run_script(script: str, *args, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run code/<script> (or an executable in the repo) as a user would, capturing output;
    ``env`` adds environment variables."""
    command, env = _script_command(script, args, env)
    return subprocess.run(command, cwd=cwd or REPO, env=env, capture_output=True, text=True)


def start_script(script: str, *args) -> subprocess.Popen:
    """Start a script in the background (concurrent jobs); ``communicate()`` collects its output."""
    command, env = _script_command(script, args)
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_case(
    root: Path,
    case: int,
    us: np.ndarray,
    mask: np.ndarray,
    spacing: float = 0.5,
    mask_affine: np.ndarray | None = None,
    layout: str = "NIFTI",
) -> tuple[Path, Path]:
    """Write one case in the RESECT (``root/RESECT``) and RESECT-SEG (``root/SEG``) layout."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    us_root = root / "RESECT" / "NIFTI" if layout == "NIFTI" else root / "RESECT"
    us_file = us_root / us_relpath(case)
    mask_file = root / "SEG" / mask_relpath(case)
    save_nifti(us_file, us, affine)
    save_nifti(mask_file, mask, affine if mask_affine is None else mask_affine)
    return us_file, mask_file


def blob_case(shape=(40, 36, 48), centre_k=24, radius=10, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A random uint8 'US' volume and a spherical {0,1} tumour around slice centre_k."""
    rng = np.random.default_rng(seed)
    us = rng.integers(0, 256, size=shape, dtype=np.uint8)
    i, j, k = np.indices(shape)
    mask = ((i - shape[0] / 2) ** 2 + (j - shape[1] / 2) ** 2 + (k - centre_k) ** 2 < radius**2).astype(np.uint8)
    return us, mask


@pytest.fixture
def resect_tree(tmp_path: Path):
    """Two valid tiny cases (1 and 2) in the RESECT layout; returns (resect_root, seg_root)."""
    for case, seed in ((1, 0), (2, 1)):
        us, mask = blob_case(seed=seed)
        write_case(tmp_path, case, us, mask)
    return tmp_path / "RESECT", tmp_path / "SEG"


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory) -> Path:
    """An output folder holding the smoke profile's data stages only (phantom, slices): the
    cheap real inputs for script tests, without the models."""
    out = tmp_path_factory.mktemp("smoke_data")
    for stage in ("phantom", "slices"):
        result = run_script("run_all.sh", "--profile", "smoke", "--out", out, "--stage", stage)
        assert result.returncode == 0, result.stdout + result.stderr
    return out


class Interrupted(KeyboardInterrupt):
    """What stops a training in the resume tests: a Ctrl-C at a chosen step."""


class InterruptAt:
    """A real training task that is stopped (like Ctrl-C) when it reaches ``step``."""

    def __init__(self, task, step: int) -> None:
        self.task, self.step = task, step

    def __getattr__(self, name):
        return getattr(self.task, name)

    def train_step(self, step: int) -> dict[str, float]:
        if step == self.step:
            raise Interrupted
        return self.task.train_step(step)


def fold_data(n: int, seed: int, size: int = 32) -> FoldData:
    """n tiny image/mask pairs, a bright rectangle in noise: enough for a training step."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r, c = rng.integers(4, size - 12, 2)
        masks[i, r : r + 8, c : c + 6] = 1
    images = (rng.integers(0, 120, (n, size, size)) + 100 * masks).astype(np.uint8)
    return FoldData(images=images, masks=masks, records=tuple(range(n)))


@pytest.fixture(scope="session")
def smoke_base(tmp_path_factory) -> Path:
    """A pretrained base in make_base.py's layout (vae/, unet/ + text input, vae_mask/, unet_mask/)
    with the smoke profile's pretrain shapes and untrained weights: what the smoke profile's
    per-fold trainings start from (--pretrained)."""
    import torch

    from iusdiff.generator.models import build_mask_unet, build_prompted_unet, build_vae, zero_text_embedding
    from iusdiff.pipeline.config import load_profile
    from iusdiff.weights import MASK_UNET_DIR, MASK_VAE_DIR

    tables = load_profile("smoke")["pretrain"]
    root = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    build_vae(tables["vae_image"], 1, 64).save_pretrained(root / "vae")
    build_vae(tables["vae_mask"], 1, 64).save_pretrained(root / MASK_VAE_DIR)
    unet = tables["ldm_image"]
    build_prompted_unet(unet, 16, 4, None, zero_text_embedding(unet["text_tokens"], unet["cross_attention_dim"])).save(root)
    build_mask_unet(tables["ldm_mask"], 8, 4).save_pretrained(root / MASK_UNET_DIR)
    return root


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """One run of the smoke profile (./run_all.sh --profile smoke) per test session, shared by the
    end-to-end test and the tests that read its outputs (the downstream study), whichever pytest
    worker they run on: the first to ask makes it under a file lock, the others wait and reuse it.
    Users must leave it as they found it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist workers share the parent
    out = shared / "smoke_run"
    with open(shared / "smoke_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "run.json").is_file():
            result = run_script("run_all.sh", "--profile", "smoke", "--out", out)
            assert result.returncode == 0, result.stdout + result.stderr
    return out


def pytest_collection_modifyitems(config, items) -> None:
    """The end-to-end smoke run is by far the longest test: collect it first, so that the two
    pytest workers (pyproject's ``-n 2 --dist loadfile``) start it at once and one of them runs
    everything else beside it (``--no-loadscope-reorder``: xdist would otherwise hand out the files
    with the most tests first). Other files that read the smoke run come last, when it is done."""
    e2e = {item.path for item in items if item.get_closest_marker("e2e") is not None}
    readers = {item.path for item in items if "smoke_run" in item.fixturenames} - e2e
    items.sort(key=lambda item: 0 if item.path in e2e else 2 if item.path in readers else 1)  # files stay whole
