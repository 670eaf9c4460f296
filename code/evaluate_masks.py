#!/usr/bin/env python3
"""Real vs generated tumour masks per fold: Tables 3 and 4, Figs. 4 and 6, per-mask metrics.

    python code/evaluate_masks.py --slices DIR --generated DIR --settings FILE \
        [--tables tables] [--figures figures] [--metrics metrics/masks] [--folds 1-5]

--generated holds one folder per fold in the sample contract (iusdiff.outputs.samples):
fold{K}/manifest.csv and fold{K}/masks/*.png. Real masks are the fold's training masks; the
generated set is the first as many non-empty generated masks (empty ones removed first, as the
authors did).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from iusdiff.cli import cases_argument, run, save_options
from iusdiff.data.slices import load_dataset
from iusdiff.errors import InputError
from iusdiff.evaluation.mask_eval import (
    compare_fold,
    nonempty_prefix,
    per_mask_rows,
    representative_mask,
    result_numbers,
    shape_set,
    table3,
    table4,
)
from iusdiff.io import atomic_path, load_mask_png
from iusdiff.outputs.layout import FIGURES_DIR, TABLES_DIR, fold_dir, fold_name, metrics_dir, result_file
from iusdiff.outputs.plotting import save_figure
from iusdiff.outputs.results import write_results
from iusdiff.outputs.samples import read_manifest
from iusdiff.outputs.tables import write_table
from iusdiff.pipeline.config import add_settings_arguments, load_stage_settings
from iusdiff.report.plots_masks import FoldShape, fig4, fig6


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=Path, required=True, help="folder written by prepare_data.py")
    parser.add_argument("--generated", type=Path, required=True, help="generated sets, one fold{K}/ folder per fold")
    add_settings_arguments(parser)
    parser.add_argument("--tables", type=Path, default=Path(TABLES_DIR))
    parser.add_argument("--figures", type=Path, default=Path(FIGURES_DIR))
    parser.add_argument("--metrics", type=Path, default=Path(metrics_dir("masks")))
    parser.add_argument("--results", type=Path, default=Path(result_file("table3_4")), help="long-format numbers for the report")
    parser.add_argument("--folds", type=cases_argument, help="folds to evaluate (default: the settings' folds)")
    return parser.parse_args(argv)


def generator_label(root: Path) -> str:
    """What produced the generated masks, as the generating script recorded it."""
    options = root / "options.json"
    if options.is_file():
        return str(json.loads(options.read_text()).get("generator", "mask LDM"))
    return "mask LDM"


def generated_masks(root: Path, fold: int, count: int) -> tuple[list, list[str], int]:
    """The fold's first ``count`` non-empty generated masks, their names, and the number of empty
    ones removed before them."""
    folder = fold_dir(root, fold)
    masks = ((s.mask, load_mask_png(folder / s.mask)) for s in read_manifest(root, fold))
    names, chosen, empty = nonempty_prefix(masks, count)
    if len(chosen) < count:
        raise InputError(f"fold {fold}: {len(chosen)} non-empty generated masks in {folder} ({empty} empty ones removed), "
                         f"need {count} (one per real training image)")
    return chosen, names, empty


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["set", "mask", "size", "esd", "in_fit"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    profile = load_stage_settings(args, [])["profile"]
    label_data, args.folds = profile["provenance"], args.folds or profile["folds"]
    dataset = load_dataset(args.slices)
    label = generator_label(args.generated)
    results, example = [], None
    for fold in args.folds:
        real_records = dataset.select(fold, "train")
        real_masks = [dataset.mask(r) for r in real_records]
        real_names = [r.mask for r in real_records]
        gen_masks, gen_names, empty = generated_masks(args.generated, fold, len(real_masks))
        real = shape_set(real_masks, real_names)
        result = compare_fold(fold, real, shape_set(gen_masks, gen_names), empty)
        results.append(result)
        write_rows(args.metrics / f"{fold_name(fold)}.csv", per_mask_rows(result))
        if example is None:
            example = representative_mask(real_masks, real, real_names)
        print(f"fold {fold}: size p = {result.size_p:.3f}, ESD p = {result.esd_p:.3f}, slope p = {result.slope_p:.3f}")
    size_px = dataset.image(dataset.records[0]).shape[0]
    for table in (table3(results, label_data, label, size_px), table4(results, label_data, label)):
        write_table(table, args.tables)
    write_results(args.results, result_numbers(results, f"{label_data}; generated masks: {label}; {size_px} px"))
    save_figure(fig4(example), args.figures / "fig4")
    folds = [FoldShape(r.real.sizes, r.real.esds, r.gen.sizes, r.gen.esds, f"Fold {r.fold}") for r in results]
    save_figure(fig6(folds), args.figures / "fig6")
    save_options(args.metrics / "options.json", args, generator=label)
    return 0


if __name__ == "__main__":
    run(main)
