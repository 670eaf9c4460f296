"""Plumbing shared by the generator scripts: folds, settings sections, run identity, skipping.

A training or sampling script loops over folds and writes ``OUT/fold{K}/``. A fold is skipped
under ``--resume`` only when its ``options.json`` records the same run key (the same settings,
training data and code) and every file of the fold still has the sha256 recorded beside that key:
content, not the key alone, says a fold is finished, so a changed file is recomputed. An
interrupted fold resumes from its latest checkpoint instead. The runner asks for recomputation
outright (``IUSDIFF_RECOMPUTE``) when it reruns a stage that was forced or whose files changed.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from pathlib import Path

import iusdiff
from iusdiff.cli import parse_cases, recompute_requested, save_options
from iusdiff.data.slices import SliceDataset, load_dataset
from iusdiff.errors import InputError
from iusdiff.io import file_digests, read_record, sha256_file, visible_files
from iusdiff.outputs.layout import OPTIONS
from iusdiff.pipeline.config import add_settings_arguments, load_stage_settings
from iusdiff.pipeline.digests import code_digest
from iusdiff.weights import TEXT_FILE, TEXT_SUBFOLDERS, resolve_pretrained


def folds_argument(value: str) -> list[int]:
    """'3', '1,2' or '1-5' -> fold numbers."""
    try:
        folds = parse_cases(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid fold list {value!r} (use e.g. '1', '1,3' or '1-5')") from None
    if not folds:
        raise argparse.ArgumentTypeError("empty fold list")
    return folds


def dataset_folds(dataset: SliceDataset, requested: list[int] | None) -> list[int]:
    """The requested folds (all of the splits' folds by default), each checked to exist."""
    available = [entry["fold"] for entry in dataset.splits["folds"]]
    folds = requested or available
    missing = [f for f in folds if f not in available]
    if missing:
        raise InputError(f"{dataset.root / 'splits.json'}: no fold {missing[0]} (folds: {available})")
    return folds


def settings(stage: dict, name: str, overrides: dict) -> dict:
    """A section of a stage's settings (``name`` may be dotted, e.g. ``pretrain.vae_image``)
    with the command line's non-None overrides on top."""
    return {**stage["sections"][name], **{k: v for k, v in overrides.items() if v is not None}}


def training_settings(cfg: dict) -> dict:
    """The settings that shape a trained model (checkpoint frequency and retention do not)."""
    return {k: v for k, v in cfg.items() if k not in ("checkpointing_steps", "keep_checkpoints")}


def data_digest(dataset: SliceDataset, fold: int) -> dict[str, list[str]]:
    """Content identity of a fold's training and validation slices (their recorded sha256)."""
    return {
        part: [f"{r.image_sha256}:{r.mask_sha256}" for r in dataset.select(fold, part)] for part in ("train", "val")
    }


def script_digest(script: str) -> str:
    """sha256 of a script and every iusdiff module it imports, as the stage runner computes it."""
    package = Path(iusdiff.__file__).resolve().parent
    return code_digest(Path(script).resolve(), package)


def folder_digest(folder: Path) -> str:
    """sha256 over a folder's files (relative names and contents): a trained model's identity."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(path).encode())
    return digest.hexdigest()


def pretrained_identity(reference: str | None, subfolders: tuple[str, ...]) -> dict | None:
    """What a finetuning run starts from: the base's location and the content of the parts it
    reads, so a retrained base (the CPU profiles build theirs in the run) is a different run.
    The recorded text input counts only for runs that read text: a mask model's key must not
    depend on whether the image half of the base, written beside it, has landed yet."""
    if reference is None:
        return None
    root = resolve_pretrained(reference)
    digests = {sub: folder_digest(root / sub) for sub in subfolders if (root / sub).is_dir()}
    if set(subfolders) & set(TEXT_SUBFOLDERS) and (root / TEXT_FILE).is_file():
        digests[TEXT_FILE] = sha256_file(root / TEXT_FILE)
    return {"reference": str(reference), "digests": digests}


def output_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file a finished fold holds, its options.json aside (which records them)."""
    return file_digests(folder, [rel for rel in visible_files(folder) if rel != OPTIONS])


def completed(fold_dir: Path, key: str) -> bool:
    """Whether ``fold_dir`` holds the finished result of the run identified by ``key``, every
    file as it was written; never when the runner asked for recomputation."""
    record = None if recompute_requested() else read_record(fold_dir / OPTIONS)
    return record is not None and record.get("run_key") == key and record.get("outputs") == output_digests(fold_dir)


def save_completion(folder: Path, args: argparse.Namespace, key: str, **extra) -> None:
    """Mark ``folder`` finished: its options.json with the run key and its files' sha256, written last."""
    save_options(folder / OPTIONS, args, run_key=key, **extra, outputs=output_digests(folder))


def add_training_arguments(parser: argparse.ArgumentParser, steps_help: str = "optimisation steps (overrides the settings)") -> None:
    """The options every training script shares (diffusers examples' names where they exist)."""
    parser.add_argument("--slices", type=Path, required=True, help="prepared slices folder (prepare_data.py)")
    parser.add_argument("--out", type=Path, required=True, help="output folder; one fold{K}/ per fold")
    add_settings_arguments(parser)
    parser.add_argument("--fold", "--folds", dest="fold", type=folds_argument, help="folds to train, e.g. 1 or 1-5 (default: all)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint; skip finished folds")
    if steps_help:
        parser.add_argument("--steps", type=int, help=steps_help)
    parser.add_argument("--checkpointing_steps", type=int, help="save a resumable checkpoint every N steps")
    parser.add_argument("--seed", type=int, help="base seed (per-fold seeds derive from it)")
    parser.add_argument("--section", metavar="SECTION", help="settings section to train with instead of the script's own "
                        "(e.g. pretrain.vae_image: the base model's pretraining on the outside corpus)")


def training_config(args: argparse.Namespace, section: str) -> dict:
    """A training script's section (``--section`` or its own) with its command-line overrides
    (``--steps`` replaces a section's ``epochs``)."""
    name = args.section or section
    overrides = {"steps": args.steps, "checkpointing_steps": args.checkpointing_steps, "seed": args.seed}
    cfg = settings(load_stage_settings(args, [name]), name, overrides)
    if args.steps is not None:
        cfg.pop("epochs", None)
    return cfg


def train_folds(args: argparse.Namespace, cfg: dict, train_fold: Callable, size: Callable[[SliceDataset], int] | None = None) -> None:
    """Train each requested fold of the slices: ``train_fold(args, cfg, dataset, fold, size)``,
    ``size`` being the slices' side (``size(dataset)``: a script's own check of it)."""
    dataset = load_dataset(args.slices)
    side = size(dataset) if size is not None else dataset.image(dataset.records[0]).shape[0]
    for fold in dataset_folds(dataset, args.fold):
        train_fold(args, cfg, dataset, fold, side)


def save_training_options(folder: Path, args: argparse.Namespace, fold: int, cfg: dict, steps: int, key: str, **extra) -> None:
    """A finished fold's options.json: its command line, settings, step count, run key and files."""
    save_completion(folder, args, key, fold=fold, settings=cfg, steps=steps, **extra)
