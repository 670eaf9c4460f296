#!/usr/bin/env python3
"""Sample the two-step generator per fold: synthetic tumour masks, then iUS images from them.

    python code/sample.py --slices DIR --mask-vae DIR --mask-ldm DIR --image-vae DIR --ius-ldm DIR
                          --out DIR --profile P [--fold 1-5] [--sampler ddpm|ddim|dpmsolver++]
                          [--steps N] [--guidance 3,5,7] [--batch-size N] [--seed N] [--resume]

Per fold, N = the fold's number of training images: N masks from the mask LDM (binarised at
0.5), then one image per mask from the iUS LDM with classifier-free guidance w. With several
guidance values, w is picked on the fold's validation masks by KID against the real validation
images, and the pick is recorded. Writes, per fold (the contract other stages rely on):

    OUT/fold{K}/masks/{index:05d}.png    {0,1} uint8
    OUT/fold{K}/images/{index:05d}.png   uint8
    OUT/fold{K}/manifest.csv             index,seed,mask,image,sampler,steps,w,empty
    OUT/fold{K}/guidance.csv             w,kid (validation KID of each candidate; when picked)
    OUT/fold{K}/options.json             the fold's run key, w and empty-mask count
    OUT/options.json

``seed`` is the sample's own seed: its mask noise and its image noise derive from it, so one
pair can be regenerated alone. Masks that decode empty are kept and flagged in ``empty``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel

from iusdiff.cli import run, save_options
from iusdiff.data import load_fold, seed_for
from iusdiff.errors import InputError
from iusdiff.fid import InceptionFeatures
from iusdiff.io import atomic_dir, atomic_path, save_png, write_json
from iusdiff.metrics import mmd2_unbiased
from iusdiff.models import MaskConditionedUNet
from iusdiff.runs import (
    OPTIONS,
    completed,
    data_digest,
    dataset_folds,
    folder_digest,
    folds_argument,
    script_digest,
    settings,
)
from iusdiff.sampling import SAMPLERS, sample_images, sample_masks
from iusdiff.slices import load_dataset
from iusdiff.training import MODEL_DIR, run_key, set_determinism

MANIFEST_FIELDS = ("index", "seed", "mask", "image", "sampler", "steps", "w", "empty")


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
    parser.add_argument("--slices", type=Path, required=True, help="prepared slices folder (N per fold, validation)")
    parser.add_argument("--mask-vae", type=Path, required=True, help="train_vae.py --kind mask output")
    parser.add_argument("--mask-ldm", type=Path, required=True, help="train_ldm.py --model mask output")
    parser.add_argument("--image-vae", type=Path, required=True, help="train_vae.py --kind image output")
    parser.add_argument("--ius-ldm", type=Path, required=True, help="train_ldm.py --model ius output")
    parser.add_argument("--out", type=Path, required=True, help="output folder; one fold{K}/ per fold")
    parser.add_argument("--profile", required=True, help="settings profile (smoke, default, paper)")
    parser.add_argument("--fold", type=folds_argument, help="folds to sample, e.g. 1 or 1-5 (default: all)")
    parser.add_argument("--sampler", choices=SAMPLERS, help="ddpm (the paper's), ddim or dpmsolver++")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the profile's; DDPM without any runs all training steps)")
    parser.add_argument("--guidance", type=guidance_argument, help="w, or candidates picked on validation (e.g. 3,5,7)")
    parser.add_argument("--batch-size", type=int, help="samples per UNet batch")
    parser.add_argument("--seed", type=int, help="base seed (each sample's seed derives from it, the fold and its index)")
    parser.add_argument("--resume", action="store_true", help="keep folds already sampled with the same models and settings")
    return parser.parse_args(argv)


def model_dir(root: Path, fold: int) -> Path:
    folder = root / f"fold{fold}" / MODEL_DIR
    if not folder.is_dir():
        raise InputError(f"{folder}: no trained model (run the training stage for fold {fold} first)")
    return folder


class FoldModels:
    """The four trained parts of one fold, loaded for inference."""

    def __init__(self, args, fold: int, device: torch.device) -> None:
        dirs = {name: model_dir(getattr(args, name), fold) for name in ("mask_vae", "mask_ldm", "image_vae", "ius_ldm")}
        self.identity = {name: folder_digest(folder) for name, folder in dirs.items()}
        self.mask_vae = AutoencoderKL.from_pretrained(dirs["mask_vae"]).to(device).eval()
        self.image_vae = AutoencoderKL.from_pretrained(dirs["image_vae"]).to(device).eval()
        self.mask_unet = UNet2DModel.from_pretrained(dirs["mask_ldm"] / "unet").to(device).eval()
        self.mask_schedule = DDPMScheduler.from_pretrained(dirs["mask_ldm"] / "scheduler").config
        self.ius = MaskConditionedUNet.load(dirs["ius_ldm"]).to(device).eval()
        self.ius_schedule = DDPMScheduler.from_pretrained(dirs["ius_ldm"] / "scheduler").config


def in_batches(fn, items: np.ndarray | list, batch: int, *per_item) -> np.ndarray:
    """Apply ``fn`` batch by batch to aligned sequences; concatenate the results."""
    parts = [fn(items[i : i + batch], *[seq[i : i + batch] for seq in per_item]) for i in range(0, len(items), batch)]
    return np.concatenate(parts)


def generate_masks(models: FoldModels, seeds: list[int], cfg: dict, device) -> np.ndarray:
    def masks_for(batch_seeds):
        return sample_masks(models.mask_unet, models.mask_vae, models.mask_schedule, batch_seeds, cfg["sampler"], cfg["steps"], device)

    return in_batches(masks_for, seeds, cfg["batch_size"])


def generate_images(models: FoldModels, masks: np.ndarray, seeds: list[int], w: float, cfg: dict, device) -> np.ndarray:
    def images_for(batch_masks, batch_seeds):
        return sample_images(
            models.ius, models.image_vae, models.ius_schedule, batch_masks, batch_seeds, cfg["sampler"], cfg["steps"], w, device
        )

    return in_batches(images_for, masks, cfg["batch_size"], seeds)


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
    records = []
    for index, (mask, image, seed) in enumerate(zip(masks, images, seeds)):
        mask_rel, image_rel = f"masks/{index:05d}.png", f"images/{index:05d}.png"
        save_png(folder / mask_rel, mask)
        save_png(folder / image_rel, image)
        records.append(
            {"index": index, "seed": seed, "mask": mask_rel, "image": image_rel, "sampler": cfg["sampler"],
             "steps": cfg["steps"], "w": w, "empty": int(not mask.any())}
        )
    with atomic_path(folder / "manifest.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    if rows:
        with atomic_path(folder / "guidance.csv") as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=("w", "kid"), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return sum(r["empty"] for r in records)


def sample_fold(args, cfg: dict, dataset, fold: int, device, extractor: InceptionFeatures | None) -> dict:
    """Sample one fold into OUT/fold{K} (replaced atomically); returns its record."""
    folder = args.out / f"fold{fold}"
    models = FoldModels(args, fold, device)
    key = run_key(cfg, fold, models.identity, data_digest(dataset, fold), script_digest(__file__))
    if args.resume and completed(folder, key):
        print(f"sample fold {fold}: up to date")
        return json.loads((folder / OPTIONS).read_text())
    set_determinism(seed_for(cfg["seed"], fold))
    if cfg["steps"] == "all":
        cfg = dict(cfg, steps=int(models.ius_schedule["num_train_timesteps"]))
    n = len(dataset.select(fold, "train"))
    seeds = [seed_for(cfg["seed"], fold, index) for index in range(n)]
    w, rows = cfg["guidance"][0], []
    if len(cfg["guidance"]) > 1:
        w, rows = pick_guidance(models, dataset, fold, cfg, extractor, device)
    masks = generate_masks(models, seeds, cfg, device)
    images = generate_images(models, masks, seeds, w, cfg, device)
    with atomic_dir(folder) as tmp:
        empty = write_fold(tmp, masks, images, seeds, w, cfg, rows)
        record = {"run_key": key, "fold": fold, "n": n, "w": w, "empty_masks": empty, "guidance_kid": rows}
        write_json(tmp / OPTIONS, record)
    print(f"sample fold {fold}: {n} pairs, w = {w}, {empty} empty mask(s)")
    return record


def resolve_sampling(args) -> dict:
    """The profile's [sampling] settings with the CLI's overrides. Without a step count
    (profile or --steps), DDPM runs every training step, the paper's sampler."""
    overrides = {"sampler": args.sampler, "steps": args.steps, "guidance": args.guidance, "batch_size": args.batch_size, "seed": args.seed}
    cfg = settings(args.profile, "sampling", overrides)
    if cfg.get("steps") is None:
        if cfg["sampler"] != "ddpm":
            raise InputError(f"sampler {cfg['sampler']!r} needs --steps")
        cfg["steps"] = "all"
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = resolve_sampling(args)
    dataset = load_dataset(args.slices)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folds = dataset_folds(dataset, args.fold)
    extractor = InceptionFeatures(device=str(device), progress=False) if len(cfg["guidance"]) > 1 else None
    records = {f"fold{fold}": sample_fold(args, cfg, dataset, fold, device, extractor) for fold in folds}
    save_options(args.out / OPTIONS, args, settings=cfg, folds=records)
    print(f"sample: {len(folds)} fold(s) -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
