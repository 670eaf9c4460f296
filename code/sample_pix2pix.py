#!/usr/bin/env python3
"""Run the Pix2Pix baseline on the proposed model's synthetic masks, per fold.

    python code/sample_pix2pix.py --slices DIR --models DIR --masks DIR --out DIR --profile P
                                  [--fold 1-5] [--resume]

Per fold, N = the fold's number of training images: the first N entries of
MASKS/fold{K}/manifest.csv (the proposed model's pairs, sample.py) are translated by the trained
generator MODELS/fold{K}/model, so both models are compared on the same masks. Test-time
behaviour is [<profile>.pix2pix] test_mode: "train" (the reference's default: batch statistics
and dropout on, dropout seeded by each sample's seed) or "eval". Writes, per fold, in the sample
contract (iusdiff.outputs.samples), replaced atomically:

    OUT/fold{K}/masks/{index:05d}.png    the proposed model's mask, copied
    OUT/fold{K}/images/{index:05d}.png   uint8
    OUT/fold{K}/manifest.csv             same index and seed; sampler "pix2pix", steps 1, w 0
    OUT/fold{K}/options.json             the fold's options and run key
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch

from iusdiff.baselines.pix2pix import check_test_mode, load_generator, translate
from iusdiff.cli import run
from iusdiff.data.slices import load_dataset
from iusdiff.errors import InputError
from iusdiff.generator.training import run_key
from iusdiff.io import atomic_dir, load_mask_png, save_png, sha256_file
from iusdiff.outputs.layout import fold_dir, model_dir
from iusdiff.outputs.samples import Sample, read_manifest, write_manifest
from iusdiff.pipeline.config import add_settings_arguments, load_stage_settings
from iusdiff.pipeline.runs import completed, save_completion, dataset_folds, folder_digest, folds_argument, script_digest

SAMPLER = "pix2pix"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=Path, required=True, help="prepared slices folder (N = the fold's training images)")
    parser.add_argument("--models", type=Path, required=True, help="train_pix2pix.py output (fold{K}/model)")
    parser.add_argument("--masks", type=Path, required=True, help="the proposed model's samples (fold{K}/manifest.csv)")
    parser.add_argument("--out", type=Path, required=True, help="output folder; one fold{K}/ per fold")
    add_settings_arguments(parser)
    parser.add_argument("--fold", "--folds", dest="fold", type=folds_argument, help="folds to sample, e.g. 1 or 1-5 (default: all)")
    parser.add_argument("--resume", action="store_true", help="keep folds already sampled with the same model, masks and settings")
    return parser.parse_args(argv)


def trained_model(root: Path, fold: int) -> Path:
    folder = model_dir(root, fold)
    if not folder.is_dir():
        raise InputError(f"{folder}: no trained Pix2Pix model (run train_pix2pix.py for fold {fold} first)")
    return folder


def first_samples(masks_root: Path, fold: int, n: int) -> list[Sample]:
    """The first ``n`` proposed samples of a fold; fewer is an input error naming the manifest."""
    samples = read_manifest(masks_root, fold)
    if len(samples) < n:
        path = fold_dir(masks_root, fold) / "manifest.csv"
        raise InputError(f"{path}: {len(samples)} samples, the fold needs {n} (one per training image)")
    return samples[:n]


def sample_fold(args, test_mode: str, dataset, fold: int, device: torch.device) -> None:
    """Translate one fold's masks into OUT/fold{K} (replaced atomically)."""
    folder = fold_dir(args.out, fold)
    source = fold_dir(args.masks, fold)
    model = trained_model(args.models, fold)
    samples = first_samples(args.masks, fold, len(dataset.select(fold, "train")))
    masks_identity = [(s.index, s.seed, sha256_file(source / s.mask)) for s in samples]
    key = run_key(test_mode, fold, folder_digest(model), masks_identity, script_digest(__file__))
    if args.resume and completed(folder, key):
        print(f"sample_pix2pix fold {fold}: up to date")
        return
    masks = np.stack([load_mask_png(source / s.mask) for s in samples])
    generator = load_generator(model).to(device)
    if masks.shape[1:] != (2**generator.levels,) * 2:
        raise InputError(f"{source}: masks are {masks.shape[1]} px, the model in {model} takes {2 ** generator.levels} px")
    images = translate(generator, masks, [s.seed for s in samples], test_mode, device)
    with atomic_dir(folder) as tmp:
        written = []
        for sample, mask, image in zip(samples, masks, images):
            image_rel = f"images/{sample.index:05d}.png"
            (tmp / sample.mask).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / sample.mask, tmp / sample.mask)
            save_png(tmp / image_rel, image)
            written.append(Sample(sample.index, sample.seed, sample.mask, image_rel, SAMPLER, 1, 0.0, int(not mask.any())))
        write_manifest(tmp / "manifest.csv", written)
        save_completion(tmp, args, key, fold=fold, n=len(written), test_mode=test_mode)
    print(f"sample_pix2pix fold {fold}: {len(written)} images from {source}")


def main(argv=None) -> int:
    args = parse_args(argv)
    test_mode = check_test_mode(load_stage_settings(args, ["pix2pix"])["sections"]["pix2pix"]["test_mode"])
    dataset = load_dataset(args.slices)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folds = dataset_folds(dataset, args.fold)
    for fold in folds:
        sample_fold(args, test_mode, dataset, fold, device)
    print(f"sample_pix2pix: {len(folds)} fold(s) -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
