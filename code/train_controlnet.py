#!/usr/bin/env python3
"""Train the ControlNet baseline per fold: phase A (UNet on iUS), then phase B (ControlNet).

    python code/train_controlnet.py --slices DIR --vae IMAGE_VAE_DIR --out DIR --profile P
                                    [--fold 1-5] [--pretrained SD_DIR] [--resume] [--steps N]

Phase A finetunes an SD-shaped UNet2DConditionModel unconditionally on the iUS latents of the
proposed model's image VAE (train_vae.py --kind image; fold{K}/model is used), with the fixed
empty-prompt text input: SD-1.5's UNet and CLIP empty prompt with --pretrained (paper), a small
UNet and a zero text embedding otherwise (default/smoke, as the proposed model). Phase B builds
``ControlNetModel.from_unet`` from phase A's best UNet with a one-channel conditioning image
(the {0,1} mask at full resolution; see iusdiff/baselines/controlnet.py), freezes the UNet and trains the
ControlNet alone, without condition dropout (the reference ControlNet never drops its control
image). Both phases run through the shared training loop: seeded, resumable per phase
(--resume), best model by validation noise-prediction loss.

Writes OUT/fold{K}/phase_a/model/ (unet/, text_embedding.safetensors, scheduler/),
OUT/fold{K}/phase_b/model/controlnet/, each phase's checkpoints/, log.csv, validation.csv and
options.json, and OUT/fold{K}/options.json. Settings: the [controlnet] section of --settings
FILE or --profile P; its phase_a and phase_b tables hold the shared keys under their own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import AutoencoderKL

from iusdiff.baselines.controlnet import (
    CONDITIONING_CHANNELS,
    CONTROLNET_DIR,
    ControlledUNet,
    ControlNetTask,
    build_controlnet,
)
from iusdiff.cli import run
from iusdiff.data.slices import load_dataset
from iusdiff.errors import InputError
from iusdiff.generator.data import Augmentation, load_fold, seed_for
from iusdiff.generator.models import (
    WEIGHT_DTYPES,
    PromptedUNet,
    build_prompted_unet,
    load_trained_vae,
    noise_scheduler,
    pretrained_text_embedding,
    vae_factor,
    zero_text_embedding,
)
from iusdiff.generator.tasks import LatentSource, LdmTask, PairedBatches, resolve_steps, validation_latents
from iusdiff.generator.training import LoopConfig, make_accelerator, run_key, set_determinism, train
from iusdiff.outputs.layout import fold_dir, model_dir
from iusdiff.pipeline.config import load_stage_settings
from iusdiff.pipeline.runs import (
    add_training_arguments,
    completed,
    save_completion,
    data_digest,
    dataset_folds,
    folder_digest,
    pretrained_identity,
    script_digest,
    settings,
    training_settings,
)
from iusdiff.weights import SCHEDULER_DIR, check_pretrained

PHASES = ("phase_a", "phase_b")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser, steps_help="optimisation steps of each phase (overrides the profile)")
    parser.add_argument("--vae", type=Path, required=True, help="train_vae.py --kind image output (the proposed model's VAE)")
    parser.add_argument("--pretrained", help="SD-1.5 diffusers folder or cached Hub id (profiles that start from SD's UNet)")
    return parser.parse_args(argv)


def load_settings(args) -> dict:
    """The [controlnet] section (each phase holds the shared keys under its own) with the
    command line's overrides, in both phases."""
    cfg = settings(load_stage_settings(args, ["controlnet"]), "controlnet", {"seed": args.seed})
    overrides = {k: v for k, v in {"seed": args.seed, "steps": args.steps, "checkpointing_steps": args.checkpointing_steps}.items() if v is not None}
    for phase in PHASES:
        cfg[phase] = {**cfg[phase], **overrides}
    return cfg


def text_embedding(args, cfg: dict) -> tuple[torch.Tensor, Path | None]:
    """The fixed text input and SD-1.5's folder when the profile starts from it."""
    if not cfg["pretrained"]:
        return zero_text_embedding(cfg["text_tokens"], cfg["cross_attention_dim"]), None
    if args.pretrained is None:
        raise InputError("these settings start from a pretrained UNet: pass --pretrained DIR (SD-1.5 or the pretrain stage's base)")
    root = check_pretrained(args.pretrained, ("unet", "text_encoder", "tokenizer"))
    return pretrained_text_embedding(root), root


class FoldInputs:
    """What both phases of a fold read: its data, the frozen image VAE, the accelerator."""

    def __init__(self, args, cfg: dict, dataset, fold: int) -> None:
        self.fold = fold
        vae_dir = model_dir(args.vae, fold)
        self.train, self.val = load_fold(dataset, fold, "train"), load_fold(dataset, fold, "val")
        self.accelerator: Accelerator = make_accelerator(cfg["mixed_precision"])
        self.vae: AutoencoderKL = load_trained_vae(vae_dir, self.accelerator.device, WEIGHT_DTYPES[cfg["mixed_precision"]])
        self.aug = Augmentation.from_profile(cfg["augmentation"]) if cfg["augment"] else None
        self.val_latents, self.val_masks = validation_latents(self.vae, "image", self.val, self.accelerator.device)

    def source(self, phase_cfg: dict, seed: int) -> LatentSource:
        batches = PairedBatches(self.train, self.aug, phase_cfg["batch_size"], seed, self.accelerator)
        return LatentSource(batches, self.vae, "image", phase_cfg["augment_copies"], phase_cfg["latent_sample"], self.accelerator.device)

    @property
    def latent_size(self) -> int:
        return self.train.images.shape[-1] // vae_factor(self.vae)


def phase_a_task(args, cfg: dict, inputs: FoldInputs, seed: int) -> LdmTask:
    """Phase A: the UNet alone, unconditional, on iUS latents."""
    text, root = text_embedding(args, cfg)
    model = build_prompted_unet(cfg, inputs.latent_size, inputs.vae.config.latent_channels, root, text)
    scheduler = noise_scheduler(cfg)

    def save(model: PromptedUNet, folder: Path) -> None:
        model.save(folder)
        scheduler.save_pretrained(folder / SCHEDULER_DIR)

    source = inputs.source(cfg, seed)
    return LdmTask(model, source, scheduler, inputs.val_latents, inputs.val_masks, cfg, inputs.accelerator, save)


def phase_b_task(cfg: dict, inputs: FoldInputs, phase_a_model: Path, seed: int) -> ControlNetTask:
    """Phase B: a ControlNet copied from phase A's best UNet, which stays frozen."""
    base = PromptedUNet.load(phase_a_model)
    model = ControlledUNet(base, build_controlnet(base.unet, cfg["conditioning_embedding_channels"], inputs.vae))

    def save(model: ControlledUNet, folder: Path) -> None:
        model.controlnet.save_pretrained(folder / CONTROLNET_DIR)

    source = inputs.source(cfg, seed)
    return ControlNetTask(model, source, noise_scheduler(cfg), inputs.val_latents, inputs.val_masks, cfg, inputs.accelerator, save)


def run_phase(args, phase: str, cfg: dict, inputs: FoldInputs, key: str, seed: int, make_task: Callable[[], LdmTask]) -> None:
    """One phase into OUT/fold{K}/<phase>/ (skipped under --resume when already finished)."""
    out = fold_dir(args.out, inputs.fold) / phase
    desc = f"controlnet {phase} fold {inputs.fold}"
    if args.resume and completed(out, key):
        print(f"{desc}: up to date")
        return
    set_determinism(seed)
    task = make_task()
    acc = inputs.accelerator
    loop = LoopConfig.from_settings(cfg, resolve_steps(cfg, len(inputs.train), acc.num_processes))
    state = train(task, loop, out, key, acc, args.resume, desc=desc)
    if acc.is_main_process:
        trainable = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
        save_completion(
            out, args, key, fold=inputs.fold, phase=phase, settings=cfg, steps=loop.steps,
            best_step=state.best_step, best_validation_score=state.best, trainable_parameters=trainable,
        )


def train_fold(args, cfg: dict, dataset, fold: int) -> None:
    folder, vae_dir = fold_dir(args.out, fold), model_dir(args.vae, fold)
    reference = args.pretrained if cfg["pretrained"] else None
    identity = {"model": "controlnet", "fold": fold, "pretrained": pretrained_identity(reference, ("unet", "text_encoder", "tokenizer"))}
    common = (identity, data_digest(dataset, fold), folder_digest(vae_dir), script_digest(__file__))
    key_a = run_key("phase_a", training_settings(cfg["phase_a"]), *common)
    fold_key = run_key(key_a, training_settings(cfg["phase_b"]))
    if args.resume and completed(folder, fold_key):
        print(f"controlnet fold {fold}: up to date")
        return
    inputs = FoldInputs(args, cfg, dataset, fold)
    seed_a, seed_b = seed_for(cfg["seed"], fold, 0), seed_for(cfg["seed"], fold, 1)
    run_phase(args, "phase_a", cfg["phase_a"], inputs, key_a, seed_a, lambda: phase_a_task(args, cfg["phase_a"], inputs, seed_a))
    phase_a_model = model_dir(args.out, fold, "phase_a")
    key_b = run_key("phase_b", training_settings(cfg["phase_b"]), folder_digest(phase_a_model), *common)
    run_phase(args, "phase_b", cfg["phase_b"], inputs, key_b, seed_b, lambda: phase_b_task(cfg["phase_b"], inputs, phase_a_model, seed_b))
    if inputs.accelerator.is_main_process:
        save_completion(
            folder, args, fold_key, fold=fold, settings=cfg, phase_keys={"phase_a": key_a, "phase_b": key_b},
            conditioning_channels=CONDITIONING_CHANNELS,
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_settings(args)
    dataset = load_dataset(args.slices)
    for fold in dataset_folds(dataset, args.fold):
        train_fold(args, cfg, dataset, fold)
    print(f"train_controlnet: ControlNet baselines -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
