#!/usr/bin/env python3
"""Train the autoencoder (AutoencoderKL) of iUS images, tumour masks, or both stacked, per fold.

    python code/train_vae.py --kind {image,mask,joint} --slices DIR --out DIR --profile P
                             [--fold 1-5] [--pretrained SD_DIR] [--resume] [--steps N]

Writes OUT/fold{K}/model/ (diffusers save_pretrained; the best checkpoint by validation MSE,
with the latent shift and scale the LDM uses), checkpoints/ (resume), log.csv, validation.csv
and options.json (resolved settings, whether the perceptual term was on). Settings: the [vae_<kind>]
section of --settings FILE (run_all.sh writes it) or of --profile P (or --section); the options
given here override them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusers import AutoencoderKL

from iusdiff.cli import run
from iusdiff.errors import InputError
from iusdiff.generator.data import Augmentation, image_tensor, load_fold, mask_tensor, seed_for
from iusdiff.generator.losses import perceptual_available, perceptual_loss
from iusdiff.generator.models import build_vae, load_pretrained_vae
from iusdiff.generator.tasks import KINDS, PairedBatches, VaeTask, resolve_steps, set_latent_scaling, vae_channels, vae_inputs
from iusdiff.generator.training import LoopConfig, make_accelerator, run_key, set_determinism, train
from iusdiff.io import atomic_dir
from iusdiff.outputs.layout import MODEL_DIR, fold_dir
from iusdiff.pipeline.runs import (
    add_training_arguments,
    completed,
    data_digest,
    save_training_options,
    pretrained_identity,
    script_digest,
    training_config,
    train_folds,
    training_settings,
)
from iusdiff.weights import MASK_VAE_DIR, check_pretrained


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, required=True, help="what the autoencoder reconstructs")
    add_training_arguments(parser, steps_help="optimisation steps (overrides the profile's steps/epochs)")
    parser.add_argument("--pretrained", help="SD-1.5 diffusers folder or cached Hub id (profiles that finetune SD's VAE)")
    return parser.parse_args(argv)


def base_vae_folder(kind: str) -> str:
    """The pretrained base's autoencoder a VAE of ``kind`` starts from (the joint VAE folds SD's)."""
    return MASK_VAE_DIR if kind == "mask" else "vae"


def build_model(cfg: dict, kind: str, size: int, pretrained: str | None) -> AutoencoderKL:
    """From scratch, or finetuned from a pretrained base: SD-1.5's VAE (paper) or the CPU base
    pretrained on the outside corpus (its ``vae/`` for images, ``vae_mask/`` for masks)."""
    if cfg["pretrained"]:
        if pretrained is None:
            raise InputError("these settings finetune a pretrained VAE: pass --pretrained DIR (SD-1.5 or the pretrain stage's base)")
        subfolder = base_vae_folder(kind)
        return load_pretrained_vae(check_pretrained(pretrained, (subfolder,)), vae_channels(kind), subfolder)
    return build_vae(cfg, vae_channels(kind), size)


def train_fold(args, cfg: dict, dataset, fold: int, size: int) -> None:
    folder = fold_dir(args.out, fold)
    reference = args.pretrained if cfg["pretrained"] else None
    # Whether VGG16 was there is part of the run: weights added later retrain with the term on.
    identity = {"kind": args.kind, "fold": fold, "pretrained": pretrained_identity(reference, (base_vae_folder(args.kind),)),
                "perceptual": perceptual_available(cfg["perceptual_weight"])}
    key = run_key(identity, training_settings(cfg), data_digest(dataset, fold), script_digest(__file__))
    if args.resume and completed(folder, key):
        print(f"vae_{args.kind} fold {fold}: up to date")
        return
    seed = seed_for(cfg["seed"], fold)
    set_determinism(seed)
    accelerator = make_accelerator(cfg["mixed_precision"])
    train_data, val_data = load_fold(dataset, fold, "train"), load_fold(dataset, fold, "val")
    vae = build_model(cfg, args.kind, size, args.pretrained)
    perceptual, note = perceptual_loss(cfg["perceptual_weight"])
    print(f"vae_{args.kind} fold {fold}: {note}")
    aug = Augmentation.from_profile(cfg["augmentation"]) if cfg["augment"] else None
    batches = PairedBatches(train_data, aug, cfg["batch_size"], seed, accelerator)
    task = VaeTask(args.kind, vae, batches, val_data, cfg, perceptual, accelerator)
    loop = LoopConfig.from_settings(cfg, resolve_steps(cfg, len(train_data), accelerator.num_processes))
    state = train(task, loop, folder, key, accelerator, args.resume, desc=f"vae_{args.kind} fold {fold}")
    if accelerator.is_main_process:  # one writer of the final model (the other ranks would race it)
        scaling = finalise(folder / MODEL_DIR, cfg, args.kind, train_data, accelerator.device)
        save_training_options(
            folder, args, fold, cfg, loop.steps, key,
            perceptual=note,
            best_step=state.best_step,
            best_validation_mse=state.best,
            latent_statistics=scaling,
        )


def finalise(model_dir: Path, cfg: dict, kind: str, data, device) -> dict | None:
    """Record the latent statistics of a from-scratch VAE in its config; a finetuned VAE keeps
    its base's (SD's constant scale, or the statistics the CPU base recorded on the corpus),
    which is what the base's UNet was trained on."""
    if cfg["pretrained"]:
        return None
    vae = AutoencoderKL.from_pretrained(model_dir).to(device)
    stats = set_latent_scaling(vae, vae_inputs(kind, image_tensor(data.images), mask_tensor(data.masks)), device)
    with atomic_dir(model_dir) as tmp:
        vae.save_pretrained(tmp)
    return stats


def main(argv=None) -> int:
    args = parse_args(argv)
    train_folds(args, training_config(args, f"vae_{args.kind}"), train_fold)
    print(f"train_vae: {args.kind} autoencoders -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
