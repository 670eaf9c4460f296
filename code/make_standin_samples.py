#!/usr/bin/env python3
"""Write a STAND-IN generated set: each fold's real training pairs, elastically perturbed.

    python code/make_standin_samples.py --slices DIR --out DIR [--copies 1] [--seed 0] [--folds 1-5]

It follows the sample contract (iusdiff.outputs.samples) so every evaluation path can run before a
generator is trained; everything computed from it is labelled as a stand-in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from iusdiff.baselines.perturb import STANDIN_LABEL, perturb_pair
from iusdiff.cli import cases_argument, progress, run, save_options
from iusdiff.data.slices import load_dataset
from iusdiff.io import atomic_dir, save_png
from iusdiff.outputs.layout import fold_dir
from iusdiff.outputs.samples import Sample, write_manifest


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=Path, required=True, help="folder written by prepare_data.py")
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--copies", type=int, default=1, help="pairs per real training image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=cases_argument, default=[1, 2, 3, 4, 5])
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    dataset = load_dataset(args.slices)
    with atomic_dir(args.out) as tmp:
        for fold in args.folds:
            records = dataset.select(fold, "train")
            target = fold_dir(tmp, fold)
            samples = []
            for index in progress(range(args.copies * len(records)), desc=f"stand-in fold {fold}", unit="pair"):
                record = records[index % len(records)]
                seed = int(np.random.SeedSequence([args.seed, fold, index]).generate_state(1)[0])
                image, mask = perturb_pair(dataset.image(record), dataset.mask(record), np.random.default_rng(seed))
                name = f"{index:05d}.png"
                save_png(target / "images" / name, image)
                save_png(target / "masks" / name, mask)
                samples.append(Sample(index, seed, f"masks/{name}", f"images/{name}", "perturbation", 0, 0.0, int(not mask.any())))
            write_manifest(target / "manifest.csv", samples)
        save_options(tmp / "options.json", args, generator=STANDIN_LABEL)
    print(f"stand-in samples for folds {args.folds} -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
