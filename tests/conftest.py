"""Shared fixtures (tiny RESECT-layout cases, the smoke profile's data, base and run) and the order in
which the test files run; the helpers that test files import are in helpers.py."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from helpers import blob_case, run_script, write_case


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
            (shared / "smoke_run.log").write_text(result.stdout + result.stderr)  # what `make repro > log` would hold
    return out


def pytest_collection_modifyitems(config, items) -> None:
    """The end-to-end smoke run is by far the longest test: collect it first, so that the two
    pytest workers (pyproject's ``-n 2 --dist loadfile``) start it at once and one of them runs
    everything else beside it (``--no-loadscope-reorder``: xdist would otherwise hand out the files
    with the most tests first). Other files that read the smoke run come last, when it is done."""
    e2e = {item.path for item in items if item.get_closest_marker("e2e") is not None}
    readers = {item.path for item in items if "smoke_run" in item.fixturenames} - e2e
    items.sort(key=lambda item: 0 if item.path in e2e else 2 if item.path in readers else 1)  # files stay whole
