#!/usr/bin/env python3
"""Sample the two-step generator per fold: synthetic tumour masks, then iUS images from them.

    python code/sample.py --slices DIR --mask-vae DIR --mask-ldm DIR --image-vae DIR --ius-ldm DIR
                          --out DIR --profile P [--fold 1-5] [--sampler ddpm|ddim|dpmsolver++]
                          [--steps N] [--guidance 3,5,7] [--batch-size N] [--seed N] [--resume]
    python code/sample.py --model controlnet --slices DIR --image-vae DIR --controlnet DIR
                          --masks PROPOSED_SAMPLES --out DIR --profile P [same options]
    python code/sample.py --model onestep --slices DIR --joint-vae DIR --onestep-ldm DIR
                          --out DIR --profile P [same options]

Per fold, N = the fold's number of training images times ``pairs_per_real`` (the profile's;
3 so that the downstream study can add up to 3 x N synthetic pairs, and Tables 2-4 use the
first N): masks from the mask LDM (binarised at 0.5), then one image per mask from the iUS
LDM with classifier-free guidance w. With several
guidance values, w is picked on the fold's validation masks by KID against the real validation
images, and the pick is recorded. Writes, per fold (the contract other stages rely on):

    OUT/fold{K}/masks/{index:05d}.png    {0,1} uint8
    OUT/fold{K}/images/{index:05d}.png   uint8
    OUT/fold{K}/manifest.csv             index,seed,mask,image,sampler,steps,w,empty
    OUT/fold{K}/guidance.csv             w,kid (validation KID of each candidate; when picked)
    OUT/fold{K}/options.json             the fold's options, run key, w and empty-mask count

``seed`` is the sample's own seed: its mask noise and its image noise derive from it, so one
pair can be regenerated alone. Masks that decode empty are kept and flagged in ``empty``.

Baselines (``--model``; same contract, N = the fold's number of training images, the profile's
sampler and steps, i.e. the proposed model's):

* ``controlnet`` (train_controlnet.py): images for the proposed model's first N masks of the
  fold (``--masks``, its manifest's seeds and image-noise stream, so the initial noise is the
  proposed image's). No guidance; w = 0 is recorded. The diffusers ControlNet pipeline guides
  only through the text prompt, and with the empty prompt its conditional and unconditional
  halves are the same prediction (the control image goes to both), i.e. guidance is a no-op;
  and phase B, like the reference training, never drops the control image, so there is no
  learned null condition to guide against.
* ``onestep`` (train_ldm.py --model onestep): N joint latents from the seeds the proposed model
  uses for its first N pairs, decoded by the joint autoencoder into an image and a mask
  (binarised at 0.5); unconditional, w = 0.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler

from iusdiff.baselines.controlnet import ControlledUNet, sample_controlnet_images
from iusdiff.cli import progress, run
from iusdiff.data.slices import load_dataset
from iusdiff.errors import InputError
from iusdiff.evaluation.fid import InceptionFeatures
from iusdiff.evaluation.metrics import mmd2_unbiased
from iusdiff.generator.data import load_fold, seed_for
from iusdiff.generator.generate import PARTS, TwoStepModels, draw_pairs, generate_images, in_batches, trained_model
from iusdiff.generator.models import load_unconditional
from iusdiff.generator.sampling import SAMPLERS, sample_joint
from iusdiff.generator.training import run_key, set_determinism
from iusdiff.io import atomic_dir, atomic_path, load_mask_png
from iusdiff.outputs.layout import fold_dir
from iusdiff.outputs.samples import read_manifest, write_pairs
from iusdiff.pipeline.config import add_settings_arguments, load_stage_settings
from iusdiff.pipeline.runs import (
    completed,
    save_completion,
    data_digest,
    dataset_folds,
    folder_digest,
    folds_argument,
    script_digest,
    settings,
)

NEEDS = {  # the model folders each --model reads (argparse dests)
    "proposed": tuple(PARTS),
    "controlnet": ("image_vae", "controlnet", "masks"),
    "onestep": ("joint_vae", "onestep_ldm"),
}


def guidance_argument(value: str) -> list[float]:
    try:
        values = [float(v) for v in value.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid guidance list {value!r} (use e.g. 3 or 3,5,7)") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("guidance weights must be >= 0")
    return values


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(NEEDS), default="proposed", help="the two-step generator or a baseline")
    parser.add_argument("--slices", type=Path, required=True, help="prepared slices folder (N per fold, validation)")
    parser.add_argument("--mask-vae", type=Path, help="train_vae.py --kind mask output (proposed)")
    parser.add_argument("--mask-ldm", type=Path, help="train_ldm.py --model mask output (proposed)")
    parser.add_argument("--image-vae", type=Path, help="train_vae.py --kind image output (proposed, controlnet)")
    parser.add_argument("--ius-ldm", type=Path, help="train_ldm.py --model ius output (proposed)")
    parser.add_argument("--controlnet", type=Path, help="train_controlnet.py output (controlnet)")
    parser.add_argument("--masks", type=Path, help="the proposed model's samples, whose masks the ControlNet paints (controlnet)")
    parser.add_argument("--joint-vae", type=Path, help="train_vae.py --kind joint output (onestep)")
    parser.add_argument("--onestep-ldm", type=Path, help="train_ldm.py --model onestep output (onestep)")
    parser.add_argument("--out", type=Path, required=True, help="output folder; one fold{K}/ per fold")
    add_settings_arguments(parser)
    parser.add_argument("--fold", "--folds", dest="fold", type=folds_argument, help="folds to sample, e.g. 1 or 1-5 (default: all)")
    parser.add_argument("--sampler", choices=SAMPLERS, help="ddpm (the paper's), ddim or dpmsolver++")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the profile's; DDPM without any runs all training steps)")
    parser.add_argument("--guidance", type=guidance_argument, help="w, or candidates picked on validation (e.g. 3,5,7)")
    parser.add_argument("--batch-size", type=int, help="samples per UNet batch")
    parser.add_argument("--seed", type=int, help="base seed (each sample's seed derives from it, the fold and its index)")
    parser.add_argument("--resume", action="store_true", help="keep folds already sampled with the same models and settings")
    args = parser.parse_args(argv)
    missing = [f"--{name.replace('_', '-')}" for name in NEEDS[args.model] if getattr(args, name) is None]
    if missing:
        parser.error(f"--model {args.model} needs {', '.join(missing)}")
    return args


@dataclass(frozen=True)
class Generated:
    """One fold's pairs, their seeds, the guidance weight and the guidance table (if picked)."""

    masks: np.ndarray
    images: np.ndarray
    seeds: list[int]
    w: float
    rows: list[dict]


class FoldModels(TwoStepModels):
    """The four trained parts of one fold (the two-step generator), loaded for inference."""

    def __init__(self, args, fold: int, device: torch.device) -> None:
        dirs = {name: trained_model(getattr(args, name), fold) for name in PARTS}
        self.identity = {name: folder_digest(folder) for name, folder in dirs.items()}
        super().__init__(dirs, device)

    def generate(self, cfg: dict, dataset, fold: int, device, extractor: InceptionFeatures | None) -> Generated:
        """pairs_per_real x N masks, then an image for each with the (picked) guidance w."""
        n = len(dataset.select(fold, "train")) * int(cfg["pairs_per_real"])
        seeds = [seed_for(cfg["seed"], fold, index) for index in range(n)]
        w, rows = cfg["guidance"][0], []
        if len(cfg["guidance"]) > 1:
            w, rows = pick_guidance(self, dataset, fold, cfg, extractor, device)
        masks, images = draw_pairs(self, seeds, w, cfg, device, progress=True, desc=f"sample proposed fold {fold}")
        return Generated(masks, images, seeds, w, rows)


class ControlNetModels:
    """The ControlNet baseline of one fold (phase-A UNet, phase-B ControlNet, image VAE) and
    the proposed model's masks it paints."""

    def __init__(self, args, fold: int, device: torch.device) -> None:
        phase_a, phase_b = trained_model(args.controlnet, fold, "phase_a"), trained_model(args.controlnet, fold, "phase_b")
        vae_dir = trained_model(args.image_vae, fold)
        self.masks_root, self.masks_dir = args.masks, fold_dir(args.masks, fold)
        self.identity = {
            "image_vae": folder_digest(vae_dir), "phase_a": folder_digest(phase_a), "phase_b": folder_digest(phase_b),
            "masks": folder_digest(self.masks_dir),
        }
        self.image_vae = AutoencoderKL.from_pretrained(vae_dir).to(device).eval()
        self.model = ControlledUNet.load(phase_a, phase_b).to(device).eval()
        self.schedule = DDPMScheduler.from_pretrained(phase_a / "scheduler").config

    def generate(self, cfg: dict, dataset, fold: int, device, extractor: InceptionFeatures | None) -> Generated:
        """Images for the proposed model's first N masks, with their seeds; no guidance."""
        n = len(dataset.select(fold, "train"))
        samples = read_manifest(self.masks_root, fold)[:n]
        if len(samples) < n:
            raise InputError(f"{self.masks_dir / 'manifest.csv'}: {len(samples)} masks, fold {fold} needs {n}")
        masks = np.stack([load_mask_png(self.masks_dir / s.mask) for s in samples])
        seeds = [s.seed for s in samples]

        def images_for(batch_masks, batch_seeds):
            return sample_controlnet_images(
                self.model, self.image_vae, self.schedule, batch_masks, batch_seeds, cfg["sampler"], cfg["steps"], device
            )

        with progress(total=n, desc=f"sample controlnet fold {fold}", unit="pair") as bar:
            images = in_batches(images_for, masks, cfg["batch_size"], seeds, bar=bar)
        return Generated(masks, images, seeds, 0.0, [])


class OneStepModels:
    """The one-step baseline of one fold: the joint (image, mask) VAE and its LDM."""

    def __init__(self, args, fold: int, device: torch.device) -> None:
        vae_dir, ldm_dir = trained_model(args.joint_vae, fold), trained_model(args.onestep_ldm, fold)
        self.identity = {"joint_vae": folder_digest(vae_dir), "onestep_ldm": folder_digest(ldm_dir)}
        self.joint_vae = AutoencoderKL.from_pretrained(vae_dir).to(device).eval()
        self.unet = load_unconditional(ldm_dir).to(device).eval()
        self.schedule = DDPMScheduler.from_pretrained(ldm_dir / "scheduler").config

    def generate(self, cfg: dict, dataset, fold: int, device, extractor: InceptionFeatures | None) -> Generated:
        """N pairs from the seeds of the proposed model's first N; unconditional (w = 0)."""
        seeds = [seed_for(cfg["seed"], fold, index) for index in range(len(dataset.select(fold, "train")))]
        parts = []
        with progress(total=len(seeds), desc=f"sample onestep fold {fold}", unit="pair") as bar:
            for i in range(0, len(seeds), cfg["batch_size"]):
                batch = seeds[i : i + cfg["batch_size"]]
                parts.append(sample_joint(self.unet, self.joint_vae, self.schedule, batch, cfg["sampler"], cfg["steps"], device))
                bar.update(len(batch))
        masks, images = (np.concatenate(arrays) for arrays in zip(*parts))
        return Generated(masks, images, seeds, 0.0, [])


LOADERS = {"proposed": FoldModels, "controlnet": ControlNetModels, "onestep": OneStepModels}


def pick_guidance(models: FoldModels, dataset, fold: int, cfg: dict, extractor: InceptionFeatures, device) -> tuple[float, list[dict]]:
    """The candidate w whose images for the validation masks are closest to the real validation
    images (same masks, same seeds for every candidate).

    Closeness is KID's unbiased MMD² on Inception features (the whole set as one subset): a
    validation fold holds 30-40 images, where FID is strongly biased by the sample size and its
    2048x2048 matrix square root costs about 20 s per value on two CPU cores.
    """
    val = load_fold(dataset, fold, "val")
    count = min(len(val), cfg["guidance_images"])
    masks, real = val.masks[:count], extractor(val.images[:count])
    seeds = [seed_for(cfg["seed"], fold, index, 1) for index in range(count)]
    rows = []
    for w in cfg["guidance"]:
        images = generate_images(models, masks, seeds, w, cfg, device)
        rows.append({"w": w, "kid": mmd2_unbiased(extractor(images), real)})
    best = min(rows, key=lambda row: row["kid"])
    return best["w"], rows


def write_fold(folder: Path, masks: np.ndarray, images: np.ndarray, seeds: list[int], w: float, cfg: dict, rows: list[dict]) -> int:
    """PNGs, manifest and guidance table of one fold; returns the number of empty masks."""
    samples = write_pairs(folder, masks, images, seeds, cfg["sampler"], cfg["steps"], w)
    if rows:
        with atomic_path(folder / "guidance.csv") as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=("w", "kid"), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return sum(s.empty for s in samples)


def sample_fold(args, cfg: dict, dataset, fold: int, device, extractor: InceptionFeatures | None) -> None:
    """Sample one fold of ``args.model`` into OUT/fold{K} (replaced atomically)."""
    folder = fold_dir(args.out, fold)
    models = LOADERS[args.model](args, fold, device)
    key = run_key(cfg, fold, models.identity, data_digest(dataset, fold), script_digest(__file__))
    if args.resume and completed(folder, key):
        print(f"sample {args.model} fold {fold}: up to date")
        return
    set_determinism(seed_for(cfg["seed"], fold))
    if cfg["steps"] == "all":
        cfg = dict(cfg, steps=int(models.schedule["num_train_timesteps"]))
    out = models.generate(cfg, dataset, fold, device, extractor)
    n = len(out.seeds)
    with atomic_dir(folder) as tmp:
        empty = write_fold(tmp, out.masks, out.images, out.seeds, out.w, cfg, out.rows)
        save_completion(tmp, args, key, settings=cfg, fold=fold, n=n, w=out.w, empty_masks=empty, guidance_kid=out.rows)
    print(f"sample {args.model} fold {fold}: {n} pairs, w = {out.w}, {empty} empty mask(s)")


def resolve_sampling(args) -> dict:
    """The [sampling] section with the command line's overrides (steps "all": every training
    step, DDPM's only)."""
    overrides = {"sampler": args.sampler, "steps": args.steps, "guidance": args.guidance, "batch_size": args.batch_size, "seed": args.seed}
    cfg = settings(load_stage_settings(args, ["sampling"]), "sampling", overrides)
    if cfg["steps"] == "all" and cfg["sampler"] != "ddpm":
        raise InputError(f"sampler {cfg['sampler']!r} needs --steps")
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = resolve_sampling(args)
    dataset = load_dataset(args.slices)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folds = dataset_folds(dataset, args.fold)
    picks_guidance = args.model == "proposed" and len(cfg["guidance"]) > 1
    extractor = InceptionFeatures(device=str(device), progress=False) if picks_guidance else None
    for fold in folds:
        sample_fold(args, cfg, dataset, fold, device, extractor)
    print(f"sample: {args.model}, {len(folds)} fold(s) -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
