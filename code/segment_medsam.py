#!/usr/bin/env python3
"""Morphological fidelity with MedSAM: segment generated images, compare with their masks.

    python code/segment_medsam.py --samples DIR --medsam-checkpoint weights/medsam_vit_b.pth \
        --out DIR [--folds 1-5] [--device cuda]

--samples holds one generated set per fold in the sample contract (iusdiff.outputs.samples). Writes
DIR/fold{K}/pred/{index}.png ({0,1}) and DIR/fold{K}/fidelity.csv with Dice and HD95 (pixels)
of MedSAM's prediction against the conditioning mask, per image.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from iusdiff.cli import cases_argument, progress, run, save_options
from iusdiff.evaluation.medsam import load_medsam, segment
from iusdiff.evaluation.metrics import dice, hd95
from iusdiff.io import atomic_path, load_mask_png, load_png, save_png
from iusdiff.outputs.layout import fold_dir
from iusdiff.outputs.samples import read_manifest

FIELDS = ("index", "mask", "image", "dice", "hd95", "segmenter")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, required=True, help="generated sets, one fold{K}/ folder per fold")
    parser.add_argument("--medsam-checkpoint", type=Path, default=Path("weights/medsam_vit_b.pth"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=cases_argument, default=[1, 2, 3, 4, 5])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    manifests = {fold: read_manifest(args.samples, fold) for fold in args.folds}  # all inputs first
    model = load_medsam(args.medsam_checkpoint, device=args.device)
    for fold, samples in manifests.items():
        root, rows = fold_dir(args.samples, fold), []
        for sample in progress(samples, desc=f"MedSAM fold {fold}", unit="image"):
            condition = load_mask_png(root / sample.mask)
            prediction = segment(model, load_png(root / sample.image), condition)
            save_png(fold_dir(args.out, fold) / "pred" / f"{sample.index:05d}.png", prediction)
            rows.append(
                {"index": sample.index, "mask": sample.mask, "image": sample.image, "dice": f"{dice(prediction, condition):.6f}",
                 "hd95": f"{hd95(prediction, condition):.4f}", "segmenter": "MedSAM ViT-B"}
            )
        with atomic_path(fold_dir(args.out, fold) / "fidelity.csv") as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    save_options(args.out / "options.json", args, segmenter="MedSAM ViT-B", checkpoint=str(args.medsam_checkpoint))
    return 0


if __name__ == "__main__":
    run(main)
