"""Table 2 and Fig. 8: image quality (FID, KID) and morphological fidelity (DSC, HD95) per model.

Per fold and model (paper §3.5, SPEC §5): FID and KID of the first N generated images against the
fold's N real training images (N = the fold's training count); DSC and HD95 of a segmenter's
prediction on each generated image against the mask that conditioned it. The paper segments
with MedSAM (:mod:`iusdiff.evaluation.medsam`); without its checkpoint the stand-in is the downstream
study's R = 0 nnU-Net of the same fold, trained on that fold's real pairs only, and every number
it feeds says so.

Empty conditioning masks leave DSC (0/0) and HD95 undefined: those images are counted and left
out of DSC/HD95. An empty prediction of a non-empty mask gives DSC 0 (averaged) and HD95 = inf
(counted, not averaged, and ranked worst in the tests of Fig. 8).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from iusdiff.errors import InputError
from iusdiff.evaluation.downstream import TRAINERS_DIR, Workspace, entry_name
from iusdiff.evaluation.nnunet_model import RECORD_FILE, model_predictor
from iusdiff.evaluation.metrics import dice, fid_from_features, hd95, kid_from_features, summarise
from iusdiff.evaluation.stats import PairwiseResult, friedman_test, pairwise_ranksums, pairwise_wilcoxon, rank_ready
from iusdiff.io import atomic_path
from iusdiff.outputs.results import Number
from iusdiff.outputs.samples import Sample, fold_dir, read_manifest
from iusdiff.outputs.tables import Table

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

# Sample folder name -> the paper's name, in Table 2's row order.
MODELS = {"pix2pix": "Pix2Pix", "proposed": "proposed", "controlnet": "ControlNet", "onestep": "one-step"}
# Models that draw their own masks: their image k has nothing to do with another model's image k,
# so Fig. 8 compares them unpaired. The others paint the proposed model's first N masks.
OWN_MASKS = ("onestep",)
STANDIN_SEGMENTER = "stand-in segmenter: the downstream R = 0 nnU-Net of the fold (trained on its real pairs), not MedSAM"
MEDSAM_SEGMENTER = "MedSAM ViT-B"


@dataclass(frozen=True)
class Metric:
    name: str  # the paper's name, also the results key
    lower_is_better: bool
    digits: int


METRICS = (Metric("FID", True, 2), Metric("KID", True, 3), Metric("DSC", False, 3), Metric("HD", True, 2))


def ordered_models(models: Sequence[str]) -> list[str]:
    """Requested models in Table 2's row order; an unknown name is an InputError."""
    if unknown := sorted(set(models) - set(MODELS)):
        raise InputError(f"unknown model(s) {unknown}; choose among {', '.join(MODELS)}")
    return [m for m in MODELS if m in models]


# ---------------------------------------------------------------------------------------------
# Inputs


def spaced_subset(n: int, cap: int | None) -> list[int]:
    """Indices of at most ``cap`` items spread evenly over ``n`` (all when cap is None or ≥ n).

    Evenly spaced rather than the first ``cap``: real slices are ordered by subject, so a prefix
    would cover only a few subjects.
    """
    if cap is None or cap >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, cap).round().astype(int).tolist()))


def generated_samples(root: Path, fold: int, count: int) -> list[Sample]:
    """The first ``count`` pairs of a fold's generated set; fewer is an InputError naming the file."""
    samples = read_manifest(root, fold)
    if len(samples) < count:
        raise InputError(
            f"{fold_dir(root, fold) / 'manifest.csv'}: {len(samples)} generated pairs, Table 2 needs {count} "
            "(one per real training image of the fold)"
        )
    missing = [s.image for s in samples[:count] if not s.image]
    if missing:
        raise InputError(f"{fold_dir(root, fold) / 'manifest.csv'}: {len(missing)} rows have no image (a mask-only set)")
    return samples[:count]


def generator_label(root: Path, folds: Sequence[int]) -> str:
    """A stand-in generator's label as its writer recorded it (``options.json`` of the set or of a
    fold); "" for a trained model."""
    for options in (root / "options.json", *(fold_dir(root, f) / "options.json" for f in folds)):
        if options.is_file():
            generator = str(json.loads(options.read_text()).get("generator", ""))
            if "stand-in" in generator:
                return generator
    return ""


# ---------------------------------------------------------------------------------------------
# Image quality


@dataclass(frozen=True)
class Quality:
    fid: float
    kid: float
    kid_std: float
    n_real: int
    n_gen: int


def image_quality(real: np.ndarray, gen: np.ndarray, seed: int = 0) -> Quality:
    """FID and KID (mean ± std over subsets of 50) between two feature sets."""
    kid, kid_std = kid_from_features(real, gen, seed=seed)
    return Quality(fid_from_features(real, gen), kid, kid_std, len(real), len(gen))


# ---------------------------------------------------------------------------------------------
# Memorisation: how close generated images sit to the training set (the paper's Fig. 5 finding)


def squared_distances(images: np.ndarray, training: np.ndarray) -> np.ndarray:
    """(n, m) sums of squared pixel differences between n images and m training images."""
    a = images.reshape(len(images), -1).astype(np.float64)
    b = training.reshape(len(training), -1).astype(np.float64)
    return np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2.0 * a @ b.T, 0.0)


def nearest_distances(images: np.ndarray, training: np.ndarray) -> np.ndarray:
    """Root-mean-square pixel distance of each image to its nearest training image (the L2 that
    picks Fig. 5's pairs)."""
    return np.sqrt(squared_distances(images, training).min(axis=1) / images[0].size)


COPY_RATIO = 0.5  # nearest training image at under half the distance of any other subject's: a near-copy


def copy_ratios(images: np.ndarray, training: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """Distance to the nearest training image over the distance to the nearest training image of
    any other subject. A copy of one training slice scores near 0; a new image, or a blur that is
    close to many slices alike, near 1. (The other subject, not the second-nearest image: a
    subject's neighbouring slices are near-duplicates of each other.)"""
    distances = squared_distances(images, training)
    nearest = distances.argmin(axis=1)
    other = np.where(subjects[None, :] != subjects[nearest][:, None], distances, np.inf).min(axis=1)
    return np.sqrt(distances[np.arange(len(images)), nearest] / other)


@dataclass(frozen=True)
class Memorisation:
    """How close a generated set sits to the training set, against held-out real images.

    ``ratio``: median nearest-training-image distance of the generated images over that of the
    held-out real ones (< 1: closer to the training set than new real images; blurred images
    score low too, because a blur is close to everything in L2). ``copies``: the fraction of
    generated images that are near-copies of one training slice (:func:`copy_ratios` under
    :data:`COPY_RATIO`), which a blur does not fake; ``copies_held_out`` is the same for the
    held-out real images, the false-alarm level.
    """

    ratio: float
    copies: float
    copies_held_out: float


def memorisation(generated: np.ndarray, held_out: np.ndarray, training: np.ndarray, subjects: np.ndarray) -> Memorisation:
    ratio = float(np.median(nearest_distances(generated, training)) / np.median(nearest_distances(held_out, training)))
    copies = float(np.mean(copy_ratios(generated, training, subjects) < COPY_RATIO))
    return Memorisation(ratio, copies, float(np.mean(copy_ratios(held_out, training, subjects) < COPY_RATIO)))


# ---------------------------------------------------------------------------------------------
# Morphological fidelity


@dataclass(frozen=True)
class Fidelity:
    """Dice and HD95 of one generated image's segmentation against its conditioning mask."""

    index: int
    dice: float  # NaN when the conditioning mask is empty
    hd95: float  # NaN when the conditioning mask is empty; inf when the prediction is empty
    empty_mask: bool
    empty_prediction: bool


def fidelity(index: int, prediction: np.ndarray, condition: np.ndarray) -> Fidelity:
    """Scores of one prediction; an empty conditioning mask leaves both undefined (NaN)."""
    empty_mask, empty_prediction = not condition.any(), not prediction.any()
    if empty_mask:
        return Fidelity(index, math.nan, math.nan, True, empty_prediction)
    return Fidelity(index, dice(prediction, condition), hd95(prediction, condition), False, empty_prediction)


def summarise_fidelity(rows: Sequence[Fidelity]) -> dict[str, float | int]:
    """Mean DSC and HD95 over the images with a usable mask, with the counts the notes report."""
    usable = [r for r in rows if not r.empty_mask]
    dsc, hd = summarise(r.dice for r in usable), summarise(r.hd95 for r in usable)
    return {
        "dsc": dsc["mean"],
        "hd": hd["mean"],
        "n_images": len(rows),
        "n_empty_masks": len(rows) - len(usable),
        "n_empty_predictions": sum(r.empty_prediction for r in usable),
        "n_hd_inf": hd["n_inf"],
    }


# ---------------------------------------------------------------------------------------------
# Stand-in segmenter: the downstream study's R = 0 nnU-Net of the fold


def standin_model(downstream: Path, fold: int) -> Path | str:
    """The exported model of the fold's R = 0 nnU-Net (``downstream.train_entry`` writes it when
    the training finished), or why there is none. Its files are checked when it is loaded."""
    folder = Workspace(downstream).model(entry_name(fold, 0))
    if (folder / RECORD_FILE).is_file():
        return folder
    if not folder.parent.is_dir():
        return f"no nnU-Net models in {folder.parent} (the downstream stage has not run)"
    return f"no R = 0 nnU-Net for fold {fold} in {folder.parent} (the profile's downstream study does not train it)"


class NnUNetSegmenter:
    """Segments one uint8 image with an exported nnU-Net ``2d`` fold, as downstream.predict_entry
    does (sliding window, Gaussian weighting; mirroring is optional because it quadruples the CPU
    time); the conditioning mask is not used. A model whose files differ from the sha256 recorded
    at export is refused (InputError naming the file)."""

    def __init__(self, model: Path, device: str = "cpu", mirroring: bool = True) -> None:
        os.environ["nnUNet_extTrainer"] = str(TRAINERS_DIR)  # iusdiff's short trainers, before nnU-Net looks
        self.predictor = model_predictor(model, device, mirroring)

    def __call__(self, image: np.ndarray, condition: np.ndarray) -> np.ndarray:
        # NaturalImage2DIO's layout: (channels, 1, H, W) float32 with a dummy spacing.
        array = image.astype(np.float32)[None, None]
        segmentation = self.predictor.predict_single_npy_array(array, {"spacing": (999, 1, 1)})
        return np.asarray(segmentation).reshape(image.shape).astype(np.uint8)


class MedSamSegmenter:
    """MedSAM prompted with the boxes of the conditioning mask (iusdiff.evaluation.medsam)."""

    def __init__(self, checkpoint: Path, device: str = "cpu", builder: Callable[[], Sam] | None = None) -> None:
        from iusdiff.evaluation.medsam import load_medsam

        self.model = load_medsam(checkpoint, builder=builder, device=device)

    def __call__(self, image: np.ndarray, condition: np.ndarray) -> np.ndarray:
        from iusdiff.evaluation.medsam import segment

        return segment(self.model, image, condition)


# ---------------------------------------------------------------------------------------------
# Table 2


@dataclass(frozen=True)
class ModelFold:
    """Table 2's numbers of one model in one fold; a metric left out of ``values`` is missing."""

    model: str
    fold: int
    values: Mapping[str, float]


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def fold_averages(entries: Sequence[ModelFold], model: str, metric: str, folds: Sequence[int]) -> tuple[float, int]:
    """Mean of a metric over the folds that have it, and how many did."""
    values = [e.values[metric] for e in entries if e.model == model and e.fold in folds and metric in e.values]
    return _mean(values), sum(math.isfinite(v) for v in values)


def _best_rows(column: Mapping[int, float], lower: bool) -> set[int]:
    """Rows holding the best finite value of a column (all of them on a tie); none with < 2 values."""
    finite = {r: v for r, v in column.items() if math.isfinite(v)}
    if len(finite) < 2:
        return set()
    best = min(finite.values()) if lower else max(finite.values())
    return {r for r, v in finite.items() if v == best}


def _cell(value: float | None, digits: int) -> str:
    if value is None:
        return "—"
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def table2(
    entries: Sequence[ModelFold],
    models: Sequence[str],
    folds: Sequence[int],
    skipped: Mapping[str, str],
    model_labels: Mapping[str, str],
    notes: Sequence[str],
) -> Table:
    """Table 2 in the paper's layout: one row per (model, metric), one column per fold and the
    average; the best model per metric and column in bold (lower FID, KID, HD95; higher DSC).

    ``skipped`` maps a model without samples to the reason; its rows stay, filled with "—".
    ``model_labels`` marks models whose samples come from a stand-in generator.
    """
    by_key = {(e.model, e.fold): e for e in entries}
    rows: list[list[str]] = []
    numeric: dict[tuple[int, int], float] = {}
    row_of: dict[tuple[str, str], int] = {}
    for model in models:
        name = MODELS[model] + (" [stand-in]" if model_labels.get(model) else "") + (" [not run]" if model in skipped else "")
        for m_index, metric in enumerate(METRICS):
            row = [name if m_index == 0 else "", metric.name if metric.name != "HD" else "HD95"]
            for c_index, fold in enumerate(folds):
                entry = by_key.get((model, fold))
                value = entry.values.get(metric.name) if entry else None
                row.append(_cell(value, metric.digits))
                if value is not None:
                    numeric[(len(rows), 2 + c_index)] = value
            average, n = fold_averages(entries, model, metric.name, folds)
            text = _cell(average if n else None, metric.digits)
            row.append(text + (f" ({n} of {len(folds)} folds)" if 0 < n < len(folds) else ""))
            if n:
                numeric[(len(rows), 2 + len(folds))] = average
            row_of[(model, metric.name)] = len(rows)
            rows.append(row)
    bold = set()
    for metric in METRICS:
        metric_rows = [row_of[(m, metric.name)] for m in models]
        for column in range(2, 3 + len(folds)):
            values = {r: numeric[(r, column)] for r in metric_rows if (r, column) in numeric}
            bold |= {(r, column) for r in _best_rows(values, metric.lower_is_better)}
    all_notes = list(notes)
    all_notes += [f"{MODELS[m]} [not run]: {reason}." for m, reason in skipped.items()]
    all_notes += [f"{MODELS[m]} [stand-in]: {label}." for m, label in model_labels.items() if m not in skipped]
    return Table(
        name="table2",
        caption="Image quality (FID ↓, KID ↓) and morphological fidelity (DSC ↑, HD95 ↓ in px) per fold and model; "
        "best per metric and column in bold.",
        columns=["Model", "Metric", *(f"Fold {f}" for f in folds), "Average"],
        rows=rows,
        bold=bold,
        notes=all_notes,
    )


def result_numbers(entries: Sequence[ModelFold], models: Sequence[str], folds: Sequence[int], labels: Mapping[tuple[str, str], str]) -> list[Number]:
    """Table 2 under the report's keys (``proposed · FID · fold 1``, ``… · average``).

    ``labels`` maps (model, metric) to the provenance its numbers carry. An average over fewer
    than all requested folds says which folds in its label.
    """
    numbers = []
    for model in models:
        for metric in METRICS:
            label = labels[(model, metric.name)]
            present = []
            for entry in entries:
                if entry.model == model and entry.fold in folds and math.isfinite(entry.values.get(metric.name, math.nan)):
                    numbers.append(Number("Table 2", f"{MODELS[model]} · {metric.name} · fold {entry.fold}", entry.values[metric.name], label))
                    present.append(entry.fold)
            if present:
                average, _ = fold_averages(entries, model, metric.name, folds)
                suffix = "" if len(present) == len(folds) else f"; average over fold(s) {', '.join(map(str, sorted(present)))} only"
                numbers.append(Number("Table 2", f"{MODELS[model]} · {metric.name} · average", average, label + suffix))
    return numbers


# ---------------------------------------------------------------------------------------------
# Fig. 8 statistics


@dataclass(frozen=True)
class PerImage:
    """One generated image's scores, the unit of Fig. 8."""

    model: str
    fold: int
    index: int
    dice: float
    hd95: float


@dataclass(frozen=True)
class ModelComparison:
    """Fig. 8's tests for one metric. Models painting the same masks are paired by (fold, index):
    Friedman across them and pairwise Wilcoxon signed-rank. A model with its own masks
    (:data:`OWN_MASKS`) is compared with each of them by Wilcoxon rank-sum, unpaired."""

    metric: str  # "dice" or "hd95"
    values: dict[str, np.ndarray]  # model -> its values: the paired images, or all its defined ones (inf allowed for hd95)
    paired: tuple[str, ...]  # the models compared on the same images
    friedman: tuple[float, float] | None
    pairwise: tuple[PairwiseResult, ...]  # signed-rank among ``paired``, then rank-sum of each own-mask model
    n_incomplete: int  # images of the paired models left out because not every one of them has a defined value


def paired_values(rows: Sequence[PerImage], models: Sequence[str], metric: str) -> tuple[dict[str, np.ndarray], int]:
    """Per model, the metric on the (fold, index) images every model has a defined value for."""
    table: dict[str, dict[tuple[int, int], float]] = {m: {} for m in models}
    for row in rows:
        if row.model in table:
            table[row.model][(row.fold, row.index)] = getattr(row, metric)
    keys = set.union(*(set(t) for t in table.values())) if table else set()
    common = sorted(k for k in keys if all(k in t and not math.isnan(t[k]) for t in table.values()))
    return {m: np.array([table[m][k] for k in common]) for m in models}, len(keys) - len(common)


def defined_values(rows: Sequence[PerImage], model: str, metric: str) -> np.ndarray:
    """A model's metric on every image where it is defined, in (fold, index) order."""
    values = sorted(((r.fold, r.index), getattr(r, metric)) for r in rows if r.model == model)
    return np.array([v for _, v in values if not math.isnan(v)])


def compare_models(rows: Sequence[PerImage], models: Sequence[str], metric: str) -> ModelComparison:
    """Fig. 8's tests for one metric: Friedman needs three paired models, a test two groups of
    at least two images."""
    paired = [m for m in models if m not in OWN_MASKS]
    values, incomplete = paired_values(rows, paired, metric)
    values |= {m: defined_values(rows, m, metric) for m in models if m in OWN_MASKS}
    tested = rank_ready(values)
    n = len(values[paired[0]]) if paired else 0
    friedman = friedman_test(*(tested[m] for m in paired)) if len(paired) >= 3 and n >= 2 else None
    pairwise = pairwise_wilcoxon({m: tested[m] for m in paired}) if len(paired) >= 2 and n >= 2 else []
    unpaired = [(own, m) for own in models if own in OWN_MASKS for m in paired if len(tested[own]) >= 2 and n >= 2]
    return ModelComparison(metric, values, tuple(paired), friedman, tuple(pairwise + pairwise_ranksums(tested, unpaired)), incomplete)


def pairing_note(models: Sequence[str]) -> str:
    """How Fig. 8 pairs images, for its footer and the labels of its numbers."""
    paired = [MODELS[m] for m in models if m not in OWN_MASKS]
    own = [MODELS[m] for m in models if m in OWN_MASKS]
    note = f"Fig. 8 tests: {', '.join(paired)} paint the same masks and are paired by (fold, index) (Friedman, Wilcoxon signed-rank)"
    if own:
        note += (f"; {', '.join(own)} draws its own masks, so it is compared unpaired with each of them (Wilcoxon rank-sum, "
                 "dashed brackets) and left out of Friedman (paper: Friedman over all four)")
    return note


FIG8_NAMES = {"dice": "DSC", "hd95": "HD"}


def comparison_numbers(comparison: ModelComparison, label: str) -> list[Number]:
    """Fig. 8's tests in the report's long format, named as in paper/tests_reported.csv."""
    name = FIG8_NAMES[comparison.metric]
    numbers = []
    if comparison.friedman is not None:
        numbers += [Number("Fig. 8", f"Friedman · {name} · chi2", comparison.friedman[0], label),
                    Number("Fig. 8", f"Friedman · {name} · p", comparison.friedman[1], label)]
    test_names = {"signed-rank": "Wilcoxon", "rank-sum": "Rank-sum"}
    numbers += [Number("Fig. 8", f"{test_names[r.test]} {MODELS[r.a]} vs {MODELS[r.b]} · {name} · p", r.p, label)
                for r in comparison.pairwise]
    return numbers


# ---------------------------------------------------------------------------------------------
# Per-image CSV


PER_IMAGE_FIELDS = ("index", "mask", "image", "dice", "hd95", "empty_mask", "empty_prediction", "segmenter")


def write_per_image(path: Path, samples: Sequence[Sample], scores: Sequence[Fidelity], segmenter: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PER_IMAGE_FIELDS, lineterminator="\n")
        writer.writeheader()
        for sample, score in zip(samples, scores, strict=True):
            writer.writerow({
                "index": sample.index, "mask": sample.mask, "image": sample.image,
                "dice": f"{score.dice:.6f}", "hd95": f"{score.hd95:.4f}",
                "empty_mask": int(score.empty_mask), "empty_prediction": int(score.empty_prediction), "segmenter": segmenter,
            })
