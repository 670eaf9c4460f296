#!/usr/bin/env python3
"""Train the Pix2Pix baseline (tumour mask -> iUS image; U-Net generator + 70x70 PatchGAN), per fold.

    python code/train_pix2pix.py --slices DIR --out DIR --profile P [--fold 1-5] [--resume]
                                 [--steps N | --epochs N] [--checkpointing_steps N] [--seed N]

Vanilla GAN + 100·L1, Adam 2e-4 (beta1 0.5), constant learning rate then linear decay to zero,
paired augmentation from [augmentation] (see iusdiff.baselines.pix2pix). Writes
OUT/fold{K}/model/ (generator.safetensors + config.json; the generator with the lowest
validation L1), checkpoints/ (resume), log.csv, validation.csv and options.json. Settings: the
[pix2pix] section of --settings FILE or --profile P; ``--steps N`` / ``--epochs N`` replace the
section's schedule by N steps / epochs, half constant and half decay (the reference's split).
"""

from __future__ import annotations

import argparse

from iusdiff.baselines.pix2pix import Pix2PixTask, check_test_mode, levels_for, resolve_schedule
from iusdiff.cli import run
from iusdiff.errors import InputError
from iusdiff.generator.data import Augmentation, load_fold, seed_for
from iusdiff.generator.tasks import PairedBatches
from iusdiff.generator.training import LoopConfig, make_accelerator, run_key, set_determinism, train
from iusdiff.outputs.layout import fold_dir
from iusdiff.pipeline.config import load_stage_settings
from iusdiff.pipeline.runs import (
    add_training_arguments,
    completed,
    data_digest,
    save_training_options,
    script_digest,
    settings,
    train_folds,
    training_settings,
)

SCHEDULE_KEYS = ("constant_steps", "decay_steps", "constant_epochs", "decay_epochs")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser, steps_help="")
    schedule = parser.add_mutually_exclusive_group()
    schedule.add_argument("--steps", type=int, help="optimisation steps, half constant and half decay (overrides the profile)")
    schedule.add_argument("--epochs", type=int, help="epochs, half constant and half decay (overrides the profile)")
    return parser.parse_args(argv)


def schedule_override(steps: int | None, epochs: int | None) -> dict[str, int]:
    """The profile's schedule keys replaced by N steps or epochs split like the reference's 100 + 100."""
    for unit, count in (("steps", steps), ("epochs", epochs)):
        if count is not None:
            if count < 2:
                raise InputError(f"--{unit} must be at least 2 (half constant, half decay), got {count}")
            return {f"constant_{unit}": count - count // 2, f"decay_{unit}": count // 2}
    return {}


def resolve_settings(args) -> dict:
    """The [pix2pix] section (or --section) with the command line's overrides."""
    name = args.section or "pix2pix"
    overrides = {"checkpointing_steps": args.checkpointing_steps, "seed": args.seed}
    cfg = settings(load_stage_settings(args, [name]), name, overrides)
    schedule = schedule_override(args.steps, args.epochs)
    if schedule:
        cfg = {k: v for k, v in cfg.items() if k not in SCHEDULE_KEYS} | schedule
    check_test_mode(cfg["test_mode"])
    return cfg


def image_size(dataset) -> int:
    """The slices' side, checked to suit the U-Net (a power of two, at least 32 px)."""
    size = dataset.image(dataset.records[0]).shape[0]
    try:
        levels_for(size)
    except ValueError as exc:
        raise InputError(f"{dataset.root}: {exc}") from None
    if size < 32:
        raise InputError(f"{dataset.root}: the Pix2Pix U-Net needs slices of at least 32 px, got {size}")
    return size


def train_fold(args, cfg: dict, dataset, fold: int, size: int) -> None:
    folder = fold_dir(args.out, fold)
    key = run_key({"model": "pix2pix", "fold": fold}, training_settings(cfg), data_digest(dataset, fold), script_digest(__file__))
    if args.resume and completed(folder, key):
        print(f"pix2pix fold {fold}: up to date")
        return
    seed = seed_for(cfg["seed"], fold)
    set_determinism(seed)
    accelerator = make_accelerator("no")
    train_data, val_data = load_fold(dataset, fold, "train"), load_fold(dataset, fold, "val")
    aug = Augmentation.from_profile(cfg["augmentation"]) if cfg["augment"] else None
    batches = PairedBatches(train_data, aug, cfg["batch_size"], seed, accelerator)
    schedule = resolve_schedule(cfg, len(train_data))
    task = Pix2PixTask(batches, val_data, cfg, schedule, size, accelerator)
    loop = LoopConfig.from_settings(cfg, schedule.steps)
    state = train(task, loop, folder, key, accelerator, args.resume, desc=f"pix2pix fold {fold}")
    if accelerator.is_main_process:
        save_training_options(
            folder, args, fold, cfg, loop.steps, key,
            schedule={"constant": schedule.constant, "decay": schedule.decay, "steps_per_unit": schedule.unit_steps},
            best_step=state.best_step,
            best_validation_l1=state.best,
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    train_folds(args, resolve_settings(args), train_fold, image_size)
    print(f"train_pix2pix: Pix2Pix generators -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
