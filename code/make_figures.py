#!/usr/bin/env python3
"""Qualitative figures: Fig. 3 (data), 5 (one-step vs nearest training pair), 7 (two-step models
with a zoom), 10 (proposed pairs by tumour size) and a contact sheet of the four models.

    python code/make_figures.py --slices slices --samples samples --settings FILE --figures figures [--fold 1]

--samples holds one folder per model in the sample contract (proposed, pix2pix, controlnet,
onestep); generated pairs come from the first N of --fold (N = its training images), as in
Table 2. A model without samples appears as a labelled empty panel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from iusdiff.cli import run, save_options
from iusdiff.data.slices import SliceDataset, load_dataset
from iusdiff.evaluation.fidelity import MODELS, generated_samples, generator_label
from iusdiff.io import load_mask_png, load_png
from iusdiff.outputs.layout import FIGURES_DIR, OPTIONS, fold_dir, metrics_dir
from iusdiff.outputs.plotting import save_figure
from iusdiff.pipeline.config import add_settings_arguments, load_stage_settings
from iusdiff.report.figures import NearestPair, Pair, contact_sheet, fig3, fig5, fig7, fig10, nearest_training, squared_difference

TWO_STEP = ("pix2pix", "controlnet", "proposed")  # Fig. 7's models, in its column order
FIG3_EXAMPLES = 4


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=Path, required=True, help="folder written by prepare_data.py")
    parser.add_argument("--samples", type=Path, required=True, help="one folder per model, each with fold{K}/manifest.csv")
    add_settings_arguments(parser)
    parser.add_argument("--figures", type=Path, default=Path(FIGURES_DIR))
    parser.add_argument("--fold", type=int, default=1, help="fold whose generated pairs are shown")
    parser.add_argument("--options", type=Path, default=Path(metrics_dir("figures"), OPTIONS), help="where the resolved options go")
    return parser.parse_args(argv)


def load_sets(samples: Path, fold: int, n: int) -> dict[str, list[Pair] | None]:
    """Each model's first n pairs of the fold, or None when its sample folder is absent."""
    sets: dict[str, list[Pair] | None] = {}
    for model in MODELS:
        root = samples / model
        if not root.is_dir():
            sets[model] = None
            continue
        folder = fold_dir(root, fold)
        sets[model] = [(load_png(folder / s.image), load_mask_png(folder / s.mask)) for s in generated_samples(root, fold, n)]
    return sets


def labels_for(profile: dict, samples: Path, sets: dict, models) -> list[str]:
    """Provenance footer of a figure showing ``models``: data label, stand-in generators, models not run."""
    labels = [profile["provenance"]]
    for model in models:
        pairs = sets[model]
        if pairs is None:
            labels.append(f"{MODELS[model]}: not run (no {samples / model})")
        elif label := generator_label(samples / model, []):
            labels.append(f"{MODELS[model]}: {label}")
    return labels


def by_size_quantiles(pairs: list[Pair], quantiles: tuple[float, ...]) -> list[int]:
    """Indices of non-empty pairs at the given quantiles of tumour size (distinct where possible)."""
    order = sorted((i for i, (_, m) in enumerate(pairs) if m.any()), key=lambda i: (pairs[i][1].mean(), i))
    if not order:
        return []
    picked = [order[min(int(q * len(order)), len(order) - 1)] for q in quantiles]
    return list(dict.fromkeys(picked))


def matching_pair(pairs: list[Pair] | None, mask: np.ndarray, index: int) -> Pair | None:
    """The pair conditioned on exactly ``mask`` when the set has one, else the pair at ``index``."""
    if pairs is None:
        return None
    for pair in pairs:
        if np.array_equal(pair[1], mask):
            return pair
    return pairs[index] if index < len(pairs) else None


def dataset_examples(dataset: SliceDataset) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The peak-tumour slice of evenly spaced subjects (Fig. 3)."""
    peaks = {}
    for record in dataset.records:
        if record.subject not in peaks or record.tumour_fraction > peaks[record.subject].tumour_fraction:
            peaks[record.subject] = record
    subjects = sorted(peaks)
    chosen = [subjects[i] for i in np.linspace(0, len(subjects) - 1, min(FIG3_EXAMPLES, len(subjects))).round().astype(int)]
    return [(dataset.image(peaks[s]), dataset.mask(peaks[s]), f"Subject {s}") for s in dict.fromkeys(chosen)]


def nearest_pairs(dataset: SliceDataset, fold: int, onestep: list[Pair]) -> list[NearestPair]:
    """Three one-step pairs (small to large tumours) beside their nearest training pair (Fig. 5)."""
    records = dataset.select(fold, "train")
    training = np.stack([dataset.image(r) for r in records])
    rows = []
    for index in by_size_quantiles(onestep, (0.25, 0.5, 0.85)):
        image, mask = onestep[index]
        nearest = records[nearest_training(image, training)]
        real_image = training[records.index(nearest)]
        rows.append(NearestPair((real_image, dataset.mask(nearest)), (image, mask), squared_difference(image, real_image),
                                f"sample {index}"))
    return rows


def reference_masks(sets: dict, quantiles: tuple[float, ...]) -> tuple[list[np.ndarray], list[int]]:
    """Masks of the first two-step model that has samples (the proposed one when present)."""
    for model in ("proposed", "pix2pix", "controlnet"):
        if sets.get(model):
            indices = by_size_quantiles(sets[model], quantiles)
            return [sets[model][i][1] for i in indices], indices
    return [], []


def model_panels(sets: dict, models, masks, indices) -> dict[str, list[Pair | None]]:
    return {m: [matching_pair(sets[m], mask, i) for mask, i in zip(masks, indices, strict=True)] for m in models}


def size_regimes(proposed: list[Pair]) -> dict[str, list[Pair]]:
    """Two proposed pairs per tumour-size regime, by quantile of the non-empty masks' sizes (Fig. 10)."""
    quantiles = {"small": (0.05, 0.15), "intermediate": (0.45, 0.55), "large": (0.85, 0.97)}
    return {name: [proposed[i] for i in by_size_quantiles(proposed, q)] for name, q in quantiles.items()}


def shared_mask_figures(sets: dict, figures: Path, labels) -> None:
    """Fig. 7 (two-step models with zooms) and the contact sheet (all models) on the same masks."""
    masks, indices = reference_masks(sets, (0.5, 0.75, 0.9))
    sheet_masks, sheet_indices = reference_masks(sets, (0.2, 0.45, 0.7, 0.9))
    if masks:
        fig7_panels = model_panels(sets, TWO_STEP, masks, indices)
        sheet_panels = model_panels(sets, MODELS, sheet_masks, sheet_indices)
    else:  # no two-step model has samples: one row of labelled empty panels
        masks = sheet_masks = [np.zeros((8, 8), np.uint8)]
        fig7_panels, sheet_panels = {m: [None] for m in TWO_STEP}, {m: [None] for m in MODELS}
    save_figure(fig7(masks, fig7_panels, labels(*TWO_STEP)), figures / "fig7")
    save_figure(contact_sheet(sheet_masks, sheet_panels, labels(*MODELS)), figures / "contact_sheet")


def main(argv=None) -> int:
    args = parse_args(argv)
    profile = load_stage_settings(args, [])["profile"]
    dataset = load_dataset(args.slices)
    n = len(dataset.select(args.fold, "train"))
    sets = load_sets(args.samples, args.fold, n)

    def labels(*models: str) -> list[str]:
        return labels_for(profile, args.samples, sets, models)

    save_figure(fig3(dataset_examples(dataset), labels()), args.figures / "fig3")
    rows = nearest_pairs(dataset, args.fold, sets["onestep"]) if sets["onestep"] else None
    save_figure(fig5(rows, labels("onestep"), missing=f"one-step: no samples in {args.samples / 'onestep'}"), args.figures / "fig5")
    shared_mask_figures(sets, args.figures, labels)
    groups = size_regimes(sets["proposed"] or [])
    save_figure(fig10(groups, labels("proposed"), missing=f"proposed: no samples in {args.samples / 'proposed'}"), args.figures / "fig10")
    save_options(args.options, args, fold_images=n, labels=labels(*MODELS))
    return 0

if __name__ == "__main__":
    run(main)
