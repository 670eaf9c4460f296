"""Sampler study on a finished run: UNet calls, speed and quality of DDPM-1000 vs faster samplers.

For each fold asked, the proposed model paints images for the same N synthetic masks (the run's
own, first N of samples/proposed) with each sampler at the fold's picked guidance w, then scores
them as Table 2 does: FID/KID against the fold's real training images and DSC/HD95 of the
stand-in segmenter (the downstream R = 0 nnU-Net) against the masks. The fold-to-fold spread of
the run's Table 2 is printed beside them, the yardstick for "a faster sampler changes nothing".

    PYTHONPATH=code python bench/samplers.py outputs/default [--folds 1] [--images 100]
        [--samplers ddpm:1000,ddim:50,dpmsolver++:20,ddpm:50]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler

from iusdiff.data.slices import load_dataset
from iusdiff.evaluation.fid import InceptionFeatures
from iusdiff.evaluation.fidelity import NnUNetSegmenter, fidelity, image_quality, spaced_subset, standin_model, summarise_fidelity
from iusdiff.generator.data import load_fold
from iusdiff.generator.models import MaskConditionedUNet
from iusdiff.generator.sampling import sample_images
from iusdiff.io import load_mask_png
from iusdiff.outputs.samples import read_manifest


def parse_samplers(value: str) -> list[tuple[str, int]]:
    return [(name, int(steps)) for name, steps in (item.split(":") for item in value.split(","))]


def table2_spread(out: Path, fold_metric: str) -> str:
    """min-max over folds of the proposed model's Table 2 value, from results/table2.csv."""
    path = out / "results" / "table2.csv"
    if not path.is_file():
        return "n/a"
    values = [float(r["value"]) for r in csv.DictReader(path.open()) if r["key"].startswith(f"proposed · {fold_metric} · fold")]
    return f"{min(values):.3g}-{max(values):.3g}" if values else "n/a"


def run_fold(out: Path, fold: int, samplers: list[tuple[str, int]], images: int, batch: int) -> list[dict]:
    dataset = load_dataset(out / "slices")
    real = load_fold(dataset, fold, "train")
    samples = read_manifest(out / "samples/proposed", fold)[: len(real)]
    chosen = [samples[i] for i in spaced_subset(len(samples), images)]
    masks = np.stack([load_mask_png(out / "samples/proposed" / f"fold{fold}" / s.mask) for s in chosen])
    seeds = [s.seed for s in chosen]
    w = json.loads((out / "samples/proposed" / f"fold{fold}" / "options.json").read_text())["w"]
    model_dir = out / "models/ldm_ius" / f"fold{fold}" / "model"
    model = MaskConditionedUNet.load(model_dir).eval()
    vae = AutoencoderKL.from_pretrained(out / "models/vae_image" / f"fold{fold}" / "model").eval()
    schedule = DDPMScheduler.from_pretrained(model_dir / "scheduler").config
    extractor = InceptionFeatures(device="cpu", progress=False)
    real_features = extractor(real.images[spaced_subset(len(real.images), images)])
    found = standin_model(out / "downstream", fold)
    segmenter = NnUNetSegmenter(found, mirroring=False) if not isinstance(found, str) else None
    rows = []
    for name, steps in samplers:
        started = time.perf_counter()
        generated = np.concatenate([
            sample_images(model, vae, schedule, masks[i : i + batch], seeds[i : i + batch], name, steps, w, "cpu")
            for i in range(0, len(masks), batch)
        ])
        seconds = time.perf_counter() - started
        quality = image_quality(real_features, extractor(generated))
        row = {"fold": fold, "sampler": f"{name}-{steps}", "unet_calls": 2 * steps, "images_per_s": len(generated) / seconds,
               "fid": quality.fid, "kid": quality.kid, "dsc": float("nan"), "hd95": float("nan")}
        if segmenter is not None:
            scores = summarise_fidelity([fidelity(i, segmenter(img, m), m) for i, (img, m) in enumerate(zip(generated, masks))])
            row["dsc"], row["hd95"] = scores["dsc"], scores["hd"]
        rows.append(row)
        print(f"fold {fold} {row['sampler']}: {seconds:.0f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a finished run's output folder (e.g. outputs/default)")
    parser.add_argument("--folds", default="1", help="folds, e.g. 1 or 1,2")
    parser.add_argument("--images", type=int, default=100, help="masks per fold (evenly spaced)")
    parser.add_argument("--samplers", type=parse_samplers, default=parse_samplers("ddpm:1000,ddim:50,dpmsolver++:20,ddpm:50"))
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the CPU profiles' stages
    rows = [r for fold in args.folds.split(",") for r in run_fold(args.out, int(fold), args.samplers, args.images, args.batch)]
    print("\n| fold | sampler | UNet calls (CFG: 2 per step) | images/s | FID | KID | DSC | HD95 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['fold']} | {r['sampler']} | {r['unet_calls']} | {r['images_per_s']:.2f} | {r['fid']:.1f} | {r['kid']:.3f} | {r['dsc']:.3f} | {r['hd95']:.2f} |")
    print(f"\nTable 2 fold-to-fold range of the proposed model in this run (min-max): FID {table2_spread(args.out, 'FID')}, "
          f"KID {table2_spread(args.out, 'KID')}, DSC {table2_spread(args.out, 'DSC')}, HD95 {table2_spread(args.out, 'HD')}")


if __name__ == "__main__":
    main()
