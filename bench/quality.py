"""Quality benchmark of a finished (or partial) run: where each model's numbers sit on its scale.

Per fold and model, on the same evenly spaced subset Table 2 uses (``--images`` per set):
* FID/KID of the generated images against the fold's real training images;
* the floor: the model's own autoencoder reconstructing those real images (image VAE for the
  proposed model and ControlNet, the joint VAE's image channel for the one-step model), and the
  fold's held-out real images (validation + test), about as low as a perfect generator gets;
* the ceiling: an untrained proposed model of the same shapes (random weights, seeded), sampled
  on the same masks and seeds through the same VAE and sampler;
* DSC/HD95 of the stand-in segmenter (the downstream R = 0 nnU-Net) against the conditioning masks;
* memorisation: each generated image's RMS pixel distance to its nearest training image, its
  median over the median of the same for held-out real images (ratio < 1: closer to the
  training set than new real images are; the paper's Fig. 5 finding for the one-step model),
  and the fraction of generated images closer than 95% of the held-out ones ("copies").

    PYTHONPATH=code python bench/quality.py outputs/default [--folds 1-5] [--models proposed,...] [--images 100] [--no-ceiling]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from iusdiff.data.slices import load_dataset
from iusdiff.evaluation.fid import InceptionFeatures, features_for_images
from iusdiff.evaluation.fidelity import (
    MODELS,
    NnUNetSegmenter,
    fidelity,
    generated_samples,
    image_quality,
    memorisation,
    spaced_subset,
    standin_model,
    summarise_fidelity,
)
from iusdiff.generator.data import image_tensor, load_fold, mask_tensor, to_uint8
from iusdiff.generator.models import MaskConditionedUNet, MaskEmbedding, decode_latents, encode_latents
from iusdiff.generator.sampling import sample_images
from iusdiff.generator.tasks import vae_inputs
from iusdiff.io import load_mask_png, load_png
from iusdiff.outputs.samples import fold_dir
from iusdiff.pipeline.runs import folds_argument

VAES = {"proposed": "vae_image", "controlnet": "vae_image", "onestep": "vae_joint"}  # what each model decodes through


def reconstruct(vae_dir: Path, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Real pairs through an autoencoder (posterior mode); the image channel of what it decodes."""
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    x = vae_inputs("joint" if vae.config.in_channels == 2 else "image", image_tensor(images), mask_tensor(masks))
    with torch.no_grad():
        return to_uint8(decode_latents(vae, encode_latents(vae, x, None))[:, :1])


def untrained_like(model_dir: Path, seed: int) -> MaskConditionedUNet:
    """The proposed model's shapes with fresh, seeded weights (what training starts from without a base)."""
    trained = MaskConditionedUNet.load(model_dir)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(trained.unet.config)
    embedding = MaskEmbedding.from_config(trained.embedding.config)
    return MaskConditionedUNet(unet, embedding, trained.text).eval()


def run_fold(out: Path, fold: int, models: list[str], images: int, ceiling: bool, cache: Path, extractor: InceptionFeatures) -> list[dict]:
    dataset = load_dataset(out / "slices")
    train = load_fold(dataset, fold, "train")
    chosen = spaced_subset(len(train), images)
    real = train.images[chosen]
    real_features = features_for_images(list(real), cache, extractor)
    held_out = np.stack([dataset.image(r) for r in dataset.select(fold, "val") + dataset.select(fold, "test")])
    subjects = np.array([r.subject for r in train.records])
    found = standin_model(out / "downstream", fold)
    segmenter = NnUNetSegmenter(found, mirroring=False) if not isinstance(found, str) else None

    def row(name: str, generated: np.ndarray, masks: np.ndarray | None = None) -> dict:
        quality = image_quality(real_features, features_for_images(list(generated), cache, extractor))
        memo = memorisation(generated, held_out, train.images, subjects)
        result = {"fold": fold, "set": name, "n": len(generated), "fid": quality.fid, "kid": quality.kid,
                  "nn_ratio": memo.ratio, "copies": memo.copies, "dsc": float("nan"), "hd95": float("nan")}
        if masks is not None and segmenter is not None:
            scores = summarise_fidelity([fidelity(i, segmenter(img, m), m) for i, (img, m) in enumerate(zip(generated, masks))])
            result["dsc"], result["hd95"] = scores["dsc"], scores["hd"]
        print(f"fold {fold} {name}: FID {quality.fid:.1f}", flush=True)
        return result

    rows = [row("real held-out (floor)", held_out)]
    for model in models:
        root = out / "samples" / model
        if not (fold_dir(root, fold) / "manifest.csv").is_file():
            continue
        samples = [generated_samples(root, fold, len(train))[i] for i in spaced_subset(len(train), images)]
        gen = np.stack([load_png(fold_dir(root, fold) / s.image) for s in samples])
        masks = np.stack([load_mask_png(fold_dir(root, fold) / s.mask) for s in samples])
        rows.append(row(model, gen, masks))
        if model in VAES and (out / "models" / VAES[model] / f"fold{fold}" / "model").is_dir():
            vae_dir = out / "models" / VAES[model] / f"fold{fold}" / "model"
            rows.append(row(f"{model}: VAE reconstructions (floor)", reconstruct(vae_dir, real, train.masks[chosen])))
        if model == "proposed" and ceiling:
            rows.append(row("proposed: untrained (ceiling)", untrained_ceiling(out, fold, samples, masks), masks))
    return rows


def untrained_ceiling(out: Path, fold: int, samples, masks: np.ndarray) -> np.ndarray:
    """Images of an untrained proposed model for the run's own masks, seeds, sampler and w."""
    sampled = json.loads((fold_dir(out / "samples/proposed", fold) / "options.json").read_text())
    model_dir = out / "models/ldm_ius" / f"fold{fold}" / "model"
    model = untrained_like(model_dir, seed=fold)
    vae = AutoencoderKL.from_pretrained(out / "models/vae_image" / f"fold{fold}" / "model").eval()
    schedule = DDPMScheduler.from_pretrained(model_dir / "scheduler").config
    seeds = [s.seed for s in samples]
    settings = sampled["settings"]
    return np.concatenate([
        sample_images(model, vae, schedule, masks[i : i + 50], seeds[i : i + 50], settings["sampler"], settings["steps"], sampled["w"], "cpu")
        for i in range(0, len(masks), 50)
    ])


def print_table(rows: list[dict]) -> None:
    print("\n| fold | set | n | FID | KID | DSC | HD95 | NN ratio | copies |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['fold']} | {r['set']} | {r['n']} | {r['fid']:.1f} | {r['kid']:.3f} | {r['dsc']:.3f} | {r['hd95']:.2f} "
              f"| {r['nn_ratio']:.3f} | {r['copies']:.2f} |")
    names = list(dict.fromkeys(r["set"] for r in rows))
    print("\nAverage over folds:\n\n| set | FID | KID | DSC | HD95 | NN ratio | copies |\n|---|---|---|---|---|---|---|")
    for name in names:
        sel = [r for r in rows if r["set"] == name]
        mean = {k: float(np.nanmean([r[k] for r in sel])) if not all(np.isnan(r[k]) for r in sel) else float("nan")
                for k in ("fid", "kid", "dsc", "hd95", "nn_ratio", "copies")}
        print(f"| {name} | {mean['fid']:.1f} | {mean['kid']:.3f} | {mean['dsc']:.3f} | {mean['hd95']:.2f} "
              f"| {mean['nn_ratio']:.3f} | {mean['copies']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a run's output folder (e.g. outputs/default)")
    parser.add_argument("--folds", type=folds_argument, default=[1, 2, 3, 4, 5], help="folds, e.g. 1 or 1-5")
    parser.add_argument("--models", type=lambda v: v.split(","), default=list(MODELS), help="comma-separated (default: all four)")
    parser.add_argument("--images", type=int, default=100, help="images per set (evenly spaced, as Table 2's cap)")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false", help="skip sampling the untrained model")
    parser.add_argument("--cache", type=Path, help="Inception feature cache (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the CPU profiles' stages
    extractor = InceptionFeatures(device="cpu", progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        rows = [r for fold in args.folds if (args.out / "slices").is_dir() for r in run_fold(args.out, fold, args.models, args.images, args.ceiling, cache, extractor)]
    print_table(rows)


if __name__ == "__main__":
    main()
