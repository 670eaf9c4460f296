"""Helpers that test files import, in every test folder (``conftest.py`` holds the fixtures):
the repository and its scripts, tiny RESECT-layout volumes, tiny training data, models and runs,
tiny prepared-slices folders and generated sets, and tiny stand-ins of the outside weights."""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from iusdiff.data.resect import mask_relpath, save_nifti, us_relpath
from iusdiff.generator.data import Augmentation, FoldData
from iusdiff.generator.models import build_vae
from iusdiff.generator.tasks import LatentSource, PairedBatches
from iusdiff.generator.training import LoopConfig, run_key, set_determinism, train
from iusdiff.io import load_mask_png, load_png, save_png, write_json
from iusdiff.outputs.samples import MANIFEST_FIELDS, Sample, write_manifest

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# The repository's scripts, run as a user would


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


# ---------------------------------------------------------------------------------------------
# A read-only folder, for this process

_READ_ONLY: list[str] = []
_HOOKED: list[bool] = []
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.chmod", "os.truncate", "os.utime", "os.symlink",
                "os.link", "shutil.rmtree"}


def _refuse_writes(event: str, args: tuple) -> None:
    """Audit hook: a write to a path below a folder in ``_READ_ONLY`` fails as the kernel fails
    it on a read-only mount (EROFS); every open(), os.open(), rename, mkdir, chmod, ... of this
    process passes here."""
    if not _READ_ONLY or not (event in _PATH_EVENTS or (event == "open" and args[2] & _WRITE_FLAGS)):
        return
    paths = args[:2] if event in ("os.rename", "os.symlink", "os.link") else args[:1]
    for path in paths:
        if isinstance(path, (str, bytes, os.PathLike)):
            absolute = os.path.abspath(os.fsdecode(path))
            if any(absolute == root or absolute.startswith(root + os.sep) for root in _READ_ONLY):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Inside the block, ``folder`` is read-only for this process (not its children), as on a
    read-only mount. ``chmod -R a-w`` cannot stand in: it does not stop root, as whom the tests
    may run, and a mount needs privileges the tests may not have."""
    if not _HOOKED:
        sys.addaudithook(_refuse_writes)  # hooks cannot be removed: this one idles while the list is empty
        _HOOKED.append(True)
    _READ_ONLY.append(os.path.abspath(folder))
    try:
        yield
    finally:
        _READ_ONLY.pop()


# ---------------------------------------------------------------------------------------------
# Tiny RESECT-layout volumes


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


# ---------------------------------------------------------------------------------------------
# Tiny training data, models and runs (image side SIZE)

SIZE = 32
LOOP = LoopConfig(steps=4, validation_steps=2, checkpointing_steps=2, keep_checkpoints=1, warmup_steps=1, lr_schedule="cosine")
VAE_CFG = {"block_out_channels": [4, 4, 4], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4}  # x4
LDM_CFG = {
    "lr": 1e-3, "validation_repeats": 1, "ema_decay": 0.9, "timesteps": 1000, "beta_start": 0.001, "beta_end": 0.02,
    "uncond_prob": 0.0, "new_layers_lr": 0.0,
}


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


def tiny_vae(channels: int = 1) -> AutoencoderKL:
    set_determinism(0)
    return build_vae(VAE_CFG, channels, SIZE).requires_grad_(False).eval()


def latent_source(vae: AutoencoderKL, acc, kind: str = "image") -> LatentSource:
    batches = PairedBatches(fold_data(12, 0), Augmentation(), 4, seed=5, accelerator=acc)
    return LatentSource(batches, vae, kind, copies=0, sample=True, device=acc.device)


def run(task, out: Path, resume: bool = False):
    return train(task, LOOP, out, run_key("test"), task.acc, resume, desc="test", log=lambda _: None)


# ---------------------------------------------------------------------------------------------
# Tiny prepared-slices folders and generated sets in the sample contract


def tiny_slices(root: Path) -> Path:
    """Subjects 1, 2 train fold 1 (3 slices each), subject 3 validates, 24 tests."""
    data = fold_data(12, 7)
    lines = ["subject,slice_index,position_mm,tumour_fraction,image,mask,image_sha256,mask_sha256\n"]
    for i, subject in enumerate((1, 1, 1, 2, 2, 2, 3, 3, 3, 24, 24, 24)):
        name = f"s{subject:02d}_k{i:04d}.png"
        save_png(root / "images" / name, data.images[i])
        save_png(root / "masks" / name, data.masks[i])
        image_sha = hashlib.sha256(data.images[i].tobytes()).hexdigest()
        mask_sha = hashlib.sha256(data.masks[i].tobytes()).hexdigest()
        lines.append(f"{subject},{i},{i * 1.0},{data.masks[i].mean():.6f},images/{name},masks/{name},{image_sha},{mask_sha}\n")
    (root / "slices.csv").write_text("".join(lines))
    write_json(root / "splits.json", {"test": [24], "folds": [{"fold": 1, "train": [1, 2], "val": [3]}]})
    return root


def check_contract(folder: Path, n: int, seeds: list[int] | None = None) -> list[dict]:
    rows = list(csv.DictReader((folder / "manifest.csv").read_text().splitlines()))
    assert list(rows[0]) == list(MANIFEST_FIELDS) and len(rows) == n
    assert (folder / "options.json").is_file() and all(float(r["w"]) == 0.0 for r in rows)
    if seeds is not None:
        assert [int(r["seed"]) for r in rows] == seeds
    for row in rows:
        mask, image = load_png(folder / row["mask"]), load_png(folder / row["image"])
        assert set(np.unique(mask)) <= {0, 1} and mask.shape == image.shape == (SIZE, SIZE)
        assert int(row["empty"]) == int(not mask.any())
    return rows


def blob(size: int, centre: tuple[int, int], radius: float) -> np.ndarray:
    rows, cols = np.indices((size, size))
    return (((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) < radius**2).astype(np.uint8)


def blob_pair(rng: np.random.Generator, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A speckled image, brighter inside a round tumour mask."""
    mask = blob(SIZE, tuple(rng.integers(12, 20, 2)), radius)
    image = np.clip(rng.normal(60, 20, (SIZE, SIZE)) + 120 * mask, 0, 255).astype(np.uint8)
    return image, mask


def blob_slices(root: Path, per_subject: int = 3) -> Path:
    """A prepared-slices folder: subjects 1, 2 train fold 1, subject 3 validates, 24 tests."""
    rng = np.random.default_rng(0)
    lines = ["subject,slice_index,position_mm,tumour_fraction,image,mask,image_sha256,mask_sha256\n"]
    for subject in (1, 2, 3, 24):
        for k in range(per_subject):
            image, mask = blob_pair(rng, 3 + 2 * k)
            name = f"s{subject:02d}_k{k:04d}.png"
            save_png(root / "images" / name, image)
            save_png(root / "masks" / name, mask)
            digest = hashlib.sha256(image.tobytes()).hexdigest()
            lines.append(f"{subject},{k},{k * 1.0},{mask.mean():.6f},images/{name},masks/{name},{digest},{digest}\n")
    (root / "slices.csv").write_text("".join(lines))
    write_json(root / "splits.json", {"test": [24], "folds": [{"fold": 1, "train": [1, 2], "val": [3]}]})
    return root


def blob_samples(root: Path, n: int, seed: int, generator: str | None = None, masks_from: Path | None = None) -> Path:
    """A generated set for fold 1 in the sample contract (optionally on another set's masks)."""
    rng = np.random.default_rng(seed)
    folder, samples = root / "fold1", []
    for index in range(n):
        image, mask = blob_pair(rng, 2 + index)
        if masks_from is not None:
            mask = load_mask_png(masks_from / "fold1" / "masks" / f"{index:05d}.png")
        name = f"{index:05d}.png"
        save_png(folder / "images" / name, image)
        save_png(folder / "masks" / name, mask)
        samples.append(Sample(index, index, f"masks/{name}", f"images/{name}", "test", 1, 0.0, int(not mask.any())))
    write_manifest(folder / "manifest.csv", samples)
    if generator:
        write_json(root / "options.json", {"generator": generator})
    return root


# ---------------------------------------------------------------------------------------------
# Tiny stand-ins of the outside weights: an SD-1.5 folder, SAM ViT-B (MedSAM)


TINY_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(8, 16),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=16,
    attention_head_dim=4,
    norm_num_groups=4,
)
TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(8, 8),
    latent_channels=4,
    norm_num_groups=4,
    sample_size=32,
)


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_UNET)
    with torch.no_grad():  # a random non-zero bias, so that forgetting to copy it would show
        unet.conv_in.bias.normal_()
    return unet.eval()


CLIP_VOCAB = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}  # SD's tokenizer: BOS, EOS (= padding)
CLIP_TOKENS = 8  # SD: 77


def tiny_text_encoder(root) -> None:
    """SD's tokenizer/ and text_encoder/ at toy size: a CLIP vocabulary written here (nothing is
    downloaded) and a random one-layer CLIPTextModel as wide as the tiny UNet's cross-attention."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = root / "tokenizer"
    tokenizer.mkdir(parents=True)
    (tokenizer / "vocab.json").write_text(json.dumps(CLIP_VOCAB))
    (tokenizer / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tokenizer / "vocab.json"), str(tokenizer / "merges.txt"), model_max_length=CLIP_TOKENS).save_pretrained(tokenizer)
    config = CLIPTextConfig(vocab_size=len(CLIP_VOCAB), hidden_size=TINY_UNET["cross_attention_dim"], intermediate_size=32,
                            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=CLIP_TOKENS,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPTextModel(config).save_pretrained(root / "text_encoder")


def sd_folder(root, with_text: bool = False):
    """A tiny SD-1.5-layout pipeline folder written with save_pretrained (no downloads)."""
    torch.manual_seed(1)
    tiny_unet().save_pretrained(root / "unet")
    AutoencoderKL(**TINY_VAE).save_pretrained(root / "vae")
    if with_text:
        tiny_text_encoder(root)
    return root


# segment_anything's own builder with a tiny image encoder; prompt encoder and mask decoder are
# the real ViT-B ones, so everything after the image encoder is exactly MedSAM's shape.
tiny_sam = partial(
    importlib.import_module("segment_anything.build_sam")._build_sam,
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=[1],
)
