#!/usr/bin/env python3
"""Train a latent diffusion model of the two-step generator, per fold.

    python code/train_ldm.py --model mask --slices DIR --vae MASK_VAE_DIR --out DIR --profile P
    python code/train_ldm.py --model ius  --slices DIR --vae IMAGE_VAE_DIR --out DIR --profile P
    python code/train_ldm.py --model onestep --slices DIR --vae JOINT_VAE_DIR --out DIR --profile P
                             [--fold 1-5] [--pretrained SD_DIR] [--resume] [--steps N]

``mask``: the unconditional mask generator (UNet2DModel on mask latents). ``ius``: the proposed
mask-conditioned iUS generator (mask embedding concatenated with the noisy latent, SD-shaped
UNet2DConditionModel with widened conv_in, condition dropout for classifier-free guidance).
``onestep``: the one-step baseline, an unconditional UNet2DModel (the mask generator's family)
on the latents of the joint image+mask autoencoder (train_vae.py --kind joint).
VAE_DIR is train_vae.py's output (fold{K}/model is used). Writes OUT/fold{K}/model/ (the best
checkpoint: unet/ [+ mask_embedding/, text_embedding.safetensors] and scheduler/),
checkpoints/, log.csv, validation.csv and options.json. Settings: [<profile>.ldm_<model>].
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler

from iusdiff.cli import run, save_options
from iusdiff.data import Augmentation, FoldData, load_fold, seed_for
from iusdiff.errors import InputError
from iusdiff.fid import InceptionFeatures
from iusdiff.metrics import fid_from_features
from iusdiff.models import (
    WEIGHT_DTYPES,
    MaskConditionedUNet,
    build_ius_unet,
    build_mask_unet,
    empty_prompt_embedding,
    load_trained_vae,
    mask_conditioned_model,
    noise_scheduler,
    vae_factor,
    zero_text_embedding,
)
from iusdiff.runs import (
    OPTIONS,
    add_training_arguments,
    completed,
    data_digest,
    dataset_folds,
    folder_digest,
    script_digest,
    training_config,
    training_settings,
)
from iusdiff.sampling import sample_images
from iusdiff.slices import load_dataset
from iusdiff.tasks import LatentSource, LdmTask, PairedBatches, resolve_steps, validation_latents
from iusdiff.training import MODEL_DIR, LoopConfig, make_accelerator, run_key, set_determinism, train
from iusdiff.weights import check_pretrained

MODELS = {"mask": "mask", "ius": "image", "onestep": "joint"}  # model -> what its VAE encodes


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(MODELS), required=True, help="mask generator, iUS generator or one-step baseline")
    add_training_arguments(parser)
    parser.add_argument("--vae", type=Path, required=True, help="train_vae.py output for this model's data")
    parser.add_argument("--pretrained", help="SD-1.5 diffusers folder or cached Hub id (profiles that start from SD's UNet)")
    return parser.parse_args(argv)


def build_model(args, cfg: dict, vae: AutoencoderKL, size: int) -> tuple[torch.nn.Module, Callable]:
    """The denoiser and how to save it (with its noise schedule) as a deployable model."""
    latent_size, channels = size // vae_factor(vae), vae.config.latent_channels
    scheduler = noise_scheduler(cfg)
    if args.model in ("mask", "onestep"):
        unet = build_mask_unet(cfg, latent_size, channels)

        def save_unconditional(model, folder: Path) -> None:
            model.save_pretrained(folder / "unet")
            scheduler.save_pretrained(folder / "scheduler")

        return unet, save_unconditional
    root = None
    if cfg["pretrained"]:
        if args.pretrained is None:
            raise InputError("these settings start from SD-1.5's UNet: pass --pretrained DIR")
        root = check_pretrained(args.pretrained, ("unet", "text_encoder", "tokenizer"))
    extra = cfg["embedding_out_channels"]
    unet = build_ius_unet(cfg, latent_size, channels, extra, root)
    text = empty_prompt_embedding(root) if root is not None else zero_text_embedding(cfg["text_tokens"], unet.config.cross_attention_dim)

    def save_ius(model: MaskConditionedUNet, folder: Path) -> None:
        model.save(folder)
        scheduler.save_pretrained(folder / "scheduler")

    return mask_conditioned_model(cfg, unet, vae_factor(vae), text), save_ius


def fid_validation(cfg: dict, vae: AutoencoderKL, scheduler: DDPMScheduler, train: FoldData, val: FoldData, seed: int, device):
    """Checkpoint score = FID of images generated for the validation masks vs the training
    images (paper §3.4), sampled with the profile's validation sampler and guidance."""
    extractor = InceptionFeatures(device=str(device), progress=False)
    real = extractor(train.images)
    seeds = [seed_for(seed, index) for index in range(len(val))]

    def score(model: MaskConditionedUNet) -> float:
        images = sample_images(
            model, vae, scheduler.config, val.masks, seeds, cfg["validation_sampler"], cfg["validation_sampler_steps"],
            cfg["validation_guidance"], device,
        )
        return fid_from_features(extractor(images), real)

    return score


def train_fold(args, cfg: dict, dataset, fold: int, size: int) -> None:
    fold_dir = args.out / f"fold{fold}"
    vae_dir = args.vae / f"fold{fold}" / MODEL_DIR
    identity = {"model": args.model, "fold": fold, "pretrained": args.pretrained}
    key = run_key(identity, training_settings(cfg), data_digest(dataset, fold), folder_digest(vae_dir), script_digest(__file__))
    if args.resume and completed(fold_dir, key):
        print(f"ldm_{args.model} fold {fold}: up to date")
        return
    seed = seed_for(cfg["seed"], fold)
    set_determinism(seed)
    accelerator = make_accelerator(cfg["mixed_precision"])
    vae = load_trained_vae(vae_dir, accelerator.device, WEIGHT_DTYPES[cfg["mixed_precision"]])
    train_data, val_data = load_fold(dataset, fold, "train"), load_fold(dataset, fold, "val")
    model, save = build_model(args, cfg, vae, size)
    aug = Augmentation.from_profile(cfg["augmentation"]) if cfg["augment"] else None
    batches = PairedBatches(train_data, aug, cfg["batch_size"], seed, accelerator)
    source = LatentSource(batches, vae, MODELS[args.model], cfg["augment_copies"], cfg["latent_sample"], accelerator.device)
    scheduler = noise_scheduler(cfg)
    val_latents, val_masks = validation_latents(vae, MODELS[args.model], val_data, accelerator.device)
    fid = None
    if args.model == "ius" and cfg["selection"] == "fid":
        fid = fid_validation(cfg, vae, scheduler, train_data, val_data, seed, accelerator.device)
    task = LdmTask(model, source, scheduler, val_latents, val_masks, cfg, accelerator, save, fid)
    loop = LoopConfig.from_settings(cfg, resolve_steps(cfg, len(train_data), accelerator.num_processes))
    state = train(task, loop, fold_dir, key, accelerator, args.resume, desc=f"ldm_{args.model} fold {fold}")
    if accelerator.is_main_process:
        save_options(
            fold_dir / OPTIONS,
            args,
            fold=fold,
            settings=cfg,
            steps=loop.steps,
            run_key=key,
            selection=cfg.get("selection", "loss"),
            best_step=state.best_step,
            best_validation_score=state.best,
            parameters=int(sum(np.prod(p.shape) for p in model.parameters())),
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = training_config(args, f"ldm_{args.model}")
    dataset = load_dataset(args.slices)
    size = dataset.image(dataset.records[0]).shape[0]
    for fold in dataset_folds(dataset, args.fold):
        train_fold(args, cfg, dataset, fold, size)
    print(f"train_ldm: {args.model} generators -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
