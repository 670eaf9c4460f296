#!/usr/bin/env python3
"""Generated iUS images per fold and model: Table 2 (FID, KID, DSC, HD95), Fig. 8, per-image metrics.

    python code/evaluate_images.py --slices slices --samples samples --settings FILE \
        [--models proposed,pix2pix,controlnet,onestep] [--tables tables] [--figures figures] \
        [--metrics metrics/images] [--results results/table2.csv] [--segmenter medsam|standin|auto] \
        [--medsam-checkpoint PATH] [--downstream downstream] [--folds 1-5] [--fid-max-images N] [--image-vae DIR] \
        [--vae-batch N]

--samples holds one folder per model in the sample contract (iusdiff.outputs.samples); a model whose
folder is absent is skipped and the table says so. Per fold, the first N pairs of each model are
evaluated (N = the fold's training images). FID/KID compare them with the fold's real training
images (at most --fid-max-images per set, 0 = all). DSC/HD95 compare a segmenter's prediction on
each generated image with its conditioning mask: MedSAM, or the stand-in R = 0 nnU-Net of the
fold from --downstream (folds without one get no DSC/HD95, and the table says why). Two
references put the FIDs in scale: the fold's held-out real images, and (with --image-vae) the
image autoencoder's reconstructions of the compared real images (metrics/images/reference.csv).
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iusdiff.cli import cases_argument, positive_int, progress, run, save_options
from iusdiff.data.slices import SliceDataset, load_dataset
from iusdiff.errors import InputError
from iusdiff.evaluation.downstream import captured_output, limit_cpu_threads, restore_matplotlib_defaults
from iusdiff.evaluation.fid import InceptionFeatures, features_for_images
from iusdiff.evaluation.fidelity import (
    MEDSAM_SEGMENTER,
    Fidelity,
    MODELS,
    STANDIN_SEGMENTER,
    MedSamSegmenter,
    ModelFold,
    NnUNetSegmenter,
    PerImage,
    compare_models,
    comparison_numbers,
    fidelity,
    generated_samples,
    generator_label,
    image_quality,
    ordered_models,
    pairing_note,
    result_numbers,
    spaced_subset,
    standin_model,
    summarise_fidelity,
    table2,
    write_per_image,
)
from iusdiff.io import atomic_path, load_mask_png, load_png, save_png
from iusdiff.outputs.layout import (
    CACHE_DIR,
    DOWNSTREAM_DIR,
    FIGURES_DIR,
    TABLES_DIR,
    fold_dir,
    fold_name,
    logs_dir,
    metrics_dir,
    model_dir,
    result_file,
)
from iusdiff.outputs.plotting import save_figure
from iusdiff.outputs.results import write_results
from iusdiff.outputs.samples import Sample
from iusdiff.outputs.tables import write_table
from iusdiff.pipeline.config import add_settings_arguments, load_stage_settings
from iusdiff.pipeline.workers import map_items, stage_workers
from iusdiff.report.figures import fig8

Segmenter = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (image, conditioning mask) -> {0,1} prediction
SUMMARY_FIELDS = ("model", "fold", "n_images", "n_fid_real", "n_fid_gen", "fid", "kid", "kid_std", "dsc", "hd95",
                  "n_empty_masks", "n_empty_predictions", "segmenter")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=Path, required=True, help="folder written by prepare_data.py")
    parser.add_argument("--samples", type=Path, required=True, help="one folder per model, each with fold{K}/manifest.csv")
    parser.add_argument("--models", type=lambda v: [m for m in v.split(",") if m], default=list(MODELS))
    add_settings_arguments(parser)
    parser.add_argument("--tables", type=Path, default=Path(TABLES_DIR))
    parser.add_argument("--figures", type=Path, default=Path(FIGURES_DIR))
    parser.add_argument("--metrics", type=Path, default=Path(metrics_dir("images")))
    parser.add_argument("--results", type=Path, default=Path(result_file("table2")), help="long-format numbers for the report")
    parser.add_argument("--segmenter", choices=("medsam", "standin", "auto"), help="default: the settings'; auto = MedSAM "
                        "when the checkpoint exists, else the stand-in")
    parser.add_argument("--medsam-checkpoint", type=Path, default=Path("weights/medsam_vit_b.pth"))
    parser.add_argument("--downstream", type=Path, default=Path(DOWNSTREAM_DIR), help="downstream study folder (stand-in segmenter)")
    parser.add_argument("--folds", type=cases_argument, help="folds to evaluate (default: the settings' folds)")
    parser.add_argument("--fid-max-images", type=int, help="images per set for FID/KID, 0 = all (default: the settings')")
    parser.add_argument("--feature-cache", type=Path, default=Path(CACHE_DIR, "inception"), help="Inception features by content hash")
    parser.add_argument("--logs", type=Path, default=Path(logs_dir("evaluate_images")), help="nnU-Net's output while it loads")
    parser.add_argument("--image-vae", type=Path, help="train_vae.py --kind image output (fold{K}/model): adds its "
                        "reconstructions' FID/KID as a reference")
    parser.add_argument("--vae-batch", type=positive_int, default=16, help="real images per image-VAE call for the "
                        "reconstruction reference (memory grows with it: SD's VAE at 256 px, ~160 MiB per image)")
    parser.add_argument("--device", help="torch device (default: the settings')")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class ModelInput:
    """One model's generated sets: where, and what made them when that is not a trained model."""

    name: str
    root: Path
    standin: str  # the stand-in generator's label, "" for a trained model


def find_models(samples: Path, models: list[str], folds: list[int]) -> tuple[dict[str, ModelInput], dict[str, str]]:
    """Models with a sample folder, and the reason for each one without."""
    present, skipped = {}, {}
    for model in models:
        root = samples / model
        if root.is_dir():
            present[model] = ModelInput(model, root, generator_label(root, folds))
        else:
            skipped[model] = f"no generated set at {root} (its sampling stage has not run)"
    return present, skipped


def resolve_segmenter(choice: str, checkpoint: Path) -> str:
    if choice == "auto":
        return "medsam" if checkpoint.is_file() else "standin"
    if choice == "medsam" and not checkpoint.is_file():
        raise InputError(f"--segmenter medsam: MedSAM checkpoint not found at {checkpoint} (use --segmenter standin or auto)")
    return choice


def fold_segmenter(kind: str, args: argparse.Namespace, fold: int, cfg: dict) -> tuple[Segmenter | None, str]:
    """(segmenter, its label) for a fold, or (None, why there is none)."""
    if kind == "medsam":
        return MedSamSegmenter(args.medsam_checkpoint, args.device), MEDSAM_SEGMENTER
    found = standin_model(args.downstream, fold)
    if isinstance(found, str):
        return None, found
    with captured_output(args.logs / f"nnunet_{fold_name(fold)}.txt"):
        segmenter = NnUNetSegmenter(found, device=args.device, mirroring=cfg["standin_mirroring"])
    return segmenter, STANDIN_SEGMENTER


def compared_real_images(dataset: SliceDataset, fold: int, cap: int | None) -> list[np.ndarray]:
    """The fold's real training images that FID/KID compare against (evenly spaced, at most cap)."""
    records = dataset.select(fold, "train")
    return [dataset.image(records[i]) for i in spaced_subset(len(records), cap)]


def segment_set(segmenter: Segmenter, model: ModelInput, samples: list[Sample], fold: int, args: argparse.Namespace,
                label: str) -> list[Fidelity]:
    """Segment every generated image, save the predictions and the per-image CSV."""
    root, out, scores = fold_dir(model.root, fold), fold_dir(args.metrics / model.name, fold), []
    for sample in progress(samples, desc=f"{model.name} fold {fold}: segment", unit="image", leave=False):
        condition = load_mask_png(root / sample.mask)
        prediction = segmenter(load_png(root / sample.image), condition)
        save_png(out / "pred" / f"{sample.index:05d}.png", prediction)
        scores.append(fidelity(sample.index, prediction, condition))
    write_per_image(out / "per_image.csv", samples, scores, label)
    return scores


REFERENCE_FIELDS = ("reference", "fold", "n_real", "n_other", "fid", "kid", "kid_std")
REFERENCES = {"held_out": "real held-out images (validation + test)", "vae_reconstruction": "image-VAE reconstructions"}


def reconstructions(vae_root: Path, fold: int, images: list[np.ndarray], device: str, batch_size: int) -> list[np.ndarray]:
    """The fold's image autoencoder applied to real images (posterior mode), as uint8,
    ``batch_size`` images per VAE call."""
    import torch

    from iusdiff.generator.models import load_trained_vae, reconstruct

    vae = load_trained_vae(model_dir(vae_root, fold), device, torch.float32)
    return list(reconstruct(vae, np.stack(images), batch_size))


def reference_rows(dataset: SliceDataset, fold: int, args: argparse.Namespace, extractor: InceptionFeatures,
                   compared: list[np.ndarray], real: np.ndarray) -> list[dict]:
    """FID/KID without a generator, against the same real features: held-out real images (near
    what a perfect generator reaches at this set size) and the image autoencoder's
    reconstructions (the best a latent model decoding through it can do)."""
    held_out = [dataset.image(r) for r in dataset.select(fold, "val") + dataset.select(fold, "test")]
    sets = {"held_out": held_out}
    if args.image_vae is not None:
        sets["vae_reconstruction"] = reconstructions(args.image_vae, fold, compared, args.device, args.vae_batch)
    rows = []
    for name, images in sets.items():
        quality = image_quality(real, features_for_images(images, args.feature_cache, extractor))
        rows.append({"reference": name, "fold": fold, "n_real": quality.n_real, "n_other": quality.n_gen,
                     "fid": quality.fid, "kid": quality.kid, "kid_std": quality.kid_std})
        print(f"fold {fold} reference {REFERENCES[name]}: FID {quality.fid:.2f}, KID {quality.kid:.4f}")
    return rows


@dataclass(frozen=True)
class FoldOutcome:
    """One fold's Table 2 numbers, Fig. 8 rows, and which segmenter scored it (or why none did)."""

    entries: list[ModelFold]
    per_image: list[PerImage]
    segmenter: str | None
    no_segmenter: str | None
    references: list[dict]


@dataclass(frozen=True)
class FoldJob:
    """What a worker process needs to evaluate one fold."""

    fold: int
    dataset: SliceDataset
    models: dict[str, ModelInput]
    kind: str
    args: argparse.Namespace
    cfg: dict
    cap: int | None


def evaluate_fold(job: FoldJob) -> tuple[FoldOutcome, list[dict]]:
    """Every model's Table 2 numbers for one fold, the per-image rows for Fig. 8 and the summary
    rows. Runs in a worker process: it loads its own networks with one thread each."""
    fold, dataset, models, kind, args, cfg, cap = job.fold, job.dataset, job.models, job.kind, job.args, job.cfg, job.cap
    limit_cpu_threads(args.device, 1)
    extractor, log = InceptionFeatures(device=args.device, progress=False), []
    n = len(dataset.select(fold, "train"))
    sets = {m: generated_samples(inp.root, fold, n) for m, inp in models.items()}  # check inputs before work
    compared = compared_real_images(dataset, fold, cap)
    real = features_for_images(compared, args.feature_cache, extractor)
    references = reference_rows(dataset, fold, args, extractor, compared, real)
    segmenter, seg_label = fold_segmenter(kind, args, fold, cfg)
    entries, per_image = [], []
    for model, samples in sets.items():
        started = time.monotonic()
        chosen = [samples[i] for i in spaced_subset(len(samples), cap)]
        gen = features_for_images([fold_dir(models[model].root, fold) / s.image for s in chosen], args.feature_cache, extractor)
        quality = image_quality(real, gen)
        values = {"FID": quality.fid, "KID": quality.kid}
        row = {"model": model, "fold": fold, "n_images": n, "n_fid_real": quality.n_real, "n_fid_gen": quality.n_gen,
               "fid": quality.fid, "kid": quality.kid, "kid_std": quality.kid_std, "segmenter": seg_label}
        if segmenter is not None:
            scores = segment_set(segmenter, models[model], samples, fold, args, seg_label)
            summary = summarise_fidelity(scores)
            values |= {"DSC": summary["dsc"], "HD": summary["hd"]}
            row |= {"dsc": summary["dsc"], "hd95": summary["hd"], "n_empty_masks": summary["n_empty_masks"],
                    "n_empty_predictions": summary["n_empty_predictions"]}
            per_image += [PerImage(model, fold, s.index, f.dice, f.hd95) for s, f in zip(samples, scores, strict=True)]
        entries.append(ModelFold(model, fold, values))
        log.append(row)
        print(f"fold {fold} {model}: FID {quality.fid:.2f}, KID {quality.kid:.4f}"
              + (f", DSC {values['DSC']:.3f}, HD95 {values['HD']:.2f}" if "DSC" in values else f" (no DSC/HD95: {seg_label})")
              + f" [{time.monotonic() - started:.1f} s]")
    if segmenter is None:
        return FoldOutcome(entries, per_image, None, seg_label, references), log
    return FoldOutcome(entries, per_image, seg_label, None, references), log


def write_summary(path: Path, rows: list[dict], fields: tuple[str, ...] = SUMMARY_FIELDS) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n", restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def fid_note(extractor: InceptionFeatures, cap: int | None) -> str:
    count = f"at most {cap} images per set, evenly spaced by index (paper: all)" if cap else "all images of each set"
    return f"FID/KID: {extractor.label} pool3 features, generated vs the fold's real training images, {count}"


def reference_note(references: list[dict]) -> str:
    """Table 2's line on the references: fold-averaged FID of each (metrics/images/reference.csv)."""
    parts = []
    for name, label in REFERENCES.items():
        values = [r["fid"] for r in references if r["reference"] == name]
        if values:
            parts.append(f"{label} {np.mean(values):.1f}")
    return "Reference FID without a generator (average over folds; metrics/images/reference.csv): " + ", ".join(parts) + "."


def table_notes(profile, extractor, cap, seg_labels, seg_missing, log, size_px, references) -> list[str]:
    notes = [f"Data: {profile['provenance']}.", fid_note(extractor, cap) + "; KID is the mean over 100 subsets of "
             "min(50, n) (std in metrics/images/summary.csv).", reference_note(references)]
    for label in sorted(set(seg_labels.values())):
        folds = ", ".join(str(f) for f, v in seg_labels.items() if v == label)
        notes.append(f"DSC/HD95 (fold {folds}): {label}; HD95 in px at {size_px} px (paper: 256 px).")
    for fold, reason in seg_missing.items():
        notes.append(f"DSC/HD95 missing for fold {fold}: {reason}.")
    empties = [f"{MODELS[r['model']]} fold {r['fold']}: {r['n_empty_masks']} empty masks, {r['n_empty_predictions']} empty predictions"
               for r in log if r.get("n_empty_masks") or r.get("n_empty_predictions")]
    notes.append("Empty conditioning masks are left out of DSC/HD95; an empty prediction counts as DSC 0 and HD95 = inf "
                 "(not averaged). " + ("; ".join(empties) + "." if empties else "None occurred."))
    return notes


def number_labels(profile, models, inputs, extractor, cap, seg_labels) -> dict[tuple[str, str], str]:
    labels = {}
    for model in models:
        base = [profile["provenance"]] + ([inputs[model].standin] if model in inputs and inputs[model].standin else [])
        for metric in ("FID", "KID"):
            labels[(model, metric)] = "; ".join(base + [fid_note(extractor, cap)])
        for metric in ("DSC", "HD"):
            labels[(model, metric)] = "; ".join(base + sorted(set(seg_labels.values())))
    return labels


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = load_stage_settings(args, ["evaluate_images"])
    args.folds = args.folds or settings["profile"]["folds"]
    profile, cfg = settings["profile"], settings["sections"]["evaluate_images"]
    args.device = args.device or cfg["device"]
    args.segmenter = args.segmenter or cfg["segmenter"]
    args.fid_max_images = cfg["fid_max_images"] if args.fid_max_images is None else args.fid_max_images
    cap = args.fid_max_images or None
    models = ordered_models(args.models)
    dataset = load_dataset(args.slices)
    inputs, skipped = find_models(args.samples, models, args.folds)
    kind = resolve_segmenter(args.segmenter, args.medsam_checkpoint)
    args.logs.mkdir(parents=True, exist_ok=True)
    limit_cpu_threads(args.device, 1)
    extractor = InceptionFeatures(device=args.device, progress=False)
    entries, per_image, log, seg_labels, seg_missing, references = [], [], [], {}, {}, []
    jobs = [FoldJob(fold, dataset, inputs, kind, args, cfg, cap) for fold in args.folds]
    workers = stage_workers(args.device)
    for job, (outcome, rows) in zip(jobs, map_items(evaluate_fold, jobs, workers), strict=True):
        log += rows
        references += outcome.references
        entries += outcome.entries
        per_image += outcome.per_image
        if outcome.segmenter:
            seg_labels[job.fold] = outcome.segmenter
        if outcome.no_segmenter:
            seg_missing[job.fold] = outcome.no_segmenter
    restore_matplotlib_defaults()
    size_px = dataset.image(dataset.records[0]).shape[0]
    write_summary(args.metrics / "summary.csv", log)
    write_summary(args.metrics / "reference.csv", references, REFERENCE_FIELDS)
    model_labels = {m: i.standin for m, i in inputs.items() if i.standin}
    segmented = [m for m in models if any(r.model == m for r in per_image)]
    pairing = [pairing_note(segmented)] if segmented else []
    notes = table_notes(profile, extractor, cap, seg_labels, seg_missing, log, size_px, references) + [f"{n}." for n in pairing]
    write_table(table2(entries, models, args.folds, skipped, model_labels, notes), args.tables)
    labels = number_labels(profile, models, inputs, extractor, cap, seg_labels)
    numbers = result_numbers(entries, models, args.folds, labels)
    comparisons = {metric: compare_models(per_image, segmented, metric) for metric in ("dice", "hd95")}
    fig_labels = [profile["provenance"], *sorted(set(seg_labels.values())), *pairing]
    fig_labels += [f"{MODELS[m]}: {l}" for m, l in model_labels.items()]
    fig_labels += [f"{MODELS[m]}: not run" for m in skipped]
    if seg_missing:
        fig_labels.append(f"no DSC/HD95 for fold {', '.join(map(str, seg_missing))} (no segmenter; see Table 2's notes)")
    for comparison in comparisons.values():
        numbers += comparison_numbers(comparison, "; ".join(fig_labels))
    write_results(args.results, numbers)
    save_figure(fig8(comparisons, fig_labels), args.figures / "fig8")
    save_options(args.metrics / "options.json", args, segmenter=sorted(set(seg_labels.values())), skipped=skipped,
                 standin_generators=model_labels, feature_extractor=extractor.identity)
    return 0


if __name__ == "__main__":
    run(main)
