#!/usr/bin/env python3
"""Train a latent diffusion model of the two-step generator, per fold.

    python code/train_ldm.py --model mask --slices DIR --vae MASK_VAE_DIR --out DIR --profile P
    python code/train_ldm.py --model ius  --slices DIR --vae IMAGE_VAE_DIR --out DIR --profile P
    python code/train_ldm.py --model onestep --slices DIR --vae JOINT_VAE_DIR --out DIR --profile P
    python code/train_ldm.py --model image --slices CORPUS --vae IMAGE_VAE_DIR --out DIR --profile P --section pretrain.ldm_image
                             [--fold 1-5] [--pretrained BASE_DIR] [--resume] [--steps N]

``mask``: the unconditional mask generator (UNet2DModel on mask latents). ``ius``: the proposed
mask-conditioned iUS generator (mask embedding concatenated with the noisy latent, SD-shaped
UNet2DConditionModel with widened conv_in, condition dropout for classifier-free guidance).
``onestep``: the one-step baseline, an unconditional LDM on the latents of the joint image+mask
autoencoder (train_vae.py --kind joint): the SD-shaped UNet when it starts from a pretrained
base, else a UNet2DModel (the mask generator's family). ``image``: an unconditional SD-shaped
iUS LDM, the CPU profiles' base UNet pretrained on the outside corpus (the pretrain stages).
VAE_DIR is train_vae.py's output (fold{K}/model is used). BASE_DIR is SD-1.5 in diffusers
format or the pretrain stage's base (vae/, unet/, vae_mask/, unet_mask/); the settings'
``pretrained`` says which models start from it. Writes OUT/fold{K}/model/ (the best
checkpoint: unet/ [+ mask_embedding/, text_embedding.safetensors] and scheduler/),
checkpoints/, log.csv, validation.csv and options.json. Settings: the [ldm_<model>] section of
--settings FILE (run_all.sh writes it) or of --profile P, or the section named by --section.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel

from iusdiff.cli import run
from iusdiff.errors import InputError
from iusdiff.evaluation.fid import InceptionFeatures
from iusdiff.evaluation.metrics import fid_from_features
from iusdiff.generator.data import Augmentation, FoldData, load_fold, seed_for
from iusdiff.generator.models import (
    WEIGHT_DTYPES,
    MaskConditionedUNet,
    build_ius_unet,
    build_mask_unet,
    build_prompted_unet,
    load_trained_vae,
    mask_conditioned_model,
    noise_scheduler,
    pretrained_text_embedding,
    vae_factor,
    zero_text_embedding,
)
from iusdiff.generator.sampling import sample_images
from iusdiff.generator.tasks import LatentSource, LdmTask, PairedBatches, resolve_steps, validation_latents
from iusdiff.generator.training import LoopConfig, make_accelerator, run_key, set_determinism, train
from iusdiff.outputs.layout import fold_dir, model_dir
from iusdiff.pipeline.runs import (
    add_training_arguments,
    completed,
    data_digest,
    save_training_options,
    folder_digest,
    pretrained_identity,
    script_digest,
    training_config,
    train_folds,
    training_settings,
)
from iusdiff.weights import MASK_UNET_DIR, SCHEDULER_DIR, UNET_DIR, check_pretrained

MODELS = {"mask": "mask", "ius": "image", "onestep": "joint", "image": "image"}  # model -> what its VAE encodes


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(MODELS), required=True, help="mask generator, iUS generator or one-step baseline")
    add_training_arguments(parser)
    parser.add_argument("--vae", type=Path, required=True, help="train_vae.py output for this model's data")
    parser.add_argument("--pretrained", help="SD-1.5 diffusers folder or cached Hub id (profiles that start from SD's UNet)")
    return parser.parse_args(argv)


def base_parts(model: str) -> tuple[str, ...]:
    """The parts of a pretrained base a model of this kind starts from."""
    return (MASK_UNET_DIR,) if model == "mask" else ("unet", "text_encoder", "tokenizer")


def pretrained_root(args, cfg: dict, subfolders: tuple[str, ...]) -> Path | None:
    """The pretrained base to start from (SD-1.5, or the pretrain stage's base), when the
    settings ask for one."""
    if not cfg["pretrained"]:
        return None
    if args.pretrained is None:
        raise InputError("these settings start from a pretrained UNet: pass --pretrained DIR (SD-1.5 or the pretrain stage's base)")
    return check_pretrained(args.pretrained, subfolders)


def build_model(args, cfg: dict, vae: AutoencoderKL, size: int) -> tuple[torch.nn.Module, Callable]:
    """The denoiser and how to save it (with its noise schedule) as a deployable model.

    ``image`` (the base's unconditional iUS LDM, ControlNet's phase-A model) and a pretrained
    ``onestep`` are the SD-shaped UNet with its fixed text input; ``mask`` and a from-scratch
    ``onestep`` are plain unconditional UNet2DModels; ``ius`` is the proposed model.
    """
    latent_size, channels = size // vae_factor(vae), vae.config.latent_channels
    scheduler = noise_scheduler(cfg)

    def save_with_schedule(model, folder: Path) -> None:
        if isinstance(model, UNet2DModel):
            model.save_pretrained(folder / UNET_DIR)
        else:  # the SD-shaped models save their UNet beside their fixed inputs
            model.save(folder)
        scheduler.save_pretrained(folder / SCHEDULER_DIR)

    if args.model == "mask" or (args.model == "onestep" and not cfg["pretrained"]):
        root = pretrained_root(args, cfg, base_parts(args.model)) if args.model == "mask" else None
        return build_mask_unet(cfg, latent_size, channels, root), save_with_schedule
    root = pretrained_root(args, cfg, base_parts(args.model))
    if args.model in ("image", "onestep"):
        text = pretrained_text_embedding(root) if root is not None else zero_text_embedding(cfg["text_tokens"], cfg["cross_attention_dim"])
        return build_prompted_unet(cfg, latent_size, channels, root, text), save_with_schedule
    unet = build_ius_unet(cfg, latent_size, channels, cfg["embedding_out_channels"], root)
    text = pretrained_text_embedding(root) if root is not None else zero_text_embedding(cfg["text_tokens"], unet.config.cross_attention_dim)
    return mask_conditioned_model(cfg, unet, vae_factor(vae), text), save_with_schedule


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
    folder, vae_dir = fold_dir(args.out, fold), model_dir(args.vae, fold)
    reference = args.pretrained if cfg["pretrained"] else None
    identity = {"model": args.model, "fold": fold, "pretrained": pretrained_identity(reference, base_parts(args.model))}
    key = run_key(identity, training_settings(cfg), data_digest(dataset, fold), folder_digest(vae_dir), script_digest(__file__))
    if args.resume and completed(folder, key):
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
    state = train(task, loop, folder, key, accelerator, args.resume, desc=f"ldm_{args.model} fold {fold}")
    if accelerator.is_main_process:
        save_training_options(
            folder, args, fold, cfg, loop.steps, key,
            selection=cfg["selection"],
            best_step=state.best_step,
            best_validation_score=state.best,
            parameters=int(sum(np.prod(p.shape) for p in model.parameters())),
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    train_folds(args, training_config(args, f"ldm_{args.model}"), train_fold)
    print(f"train_ldm: {args.model} generators -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
