#!/usr/bin/env python3
"""Downstream augmentation study with nnU-Net v2 (paper Fig. 9): train per (fold, R), test, compare R.

    python code/downstream_nnunet.py --slices DIR --samples DIR --out DIR --settings FILE
        [--fig-dir DIR] [--table-dir DIR] [--results FILE] [--folds 1-5] [--ratios 0,1,2,3]
        [--trainer nnUNetTrainer] [--device cpu|cuda] [--seed 0] [--workers N] [--threads 1]

The study's settings are the [downstream] section of --settings FILE (or --profile P); the
options given here override them.

--samples holds synthetic pairs in the sample contract (fold{K}/manifest.csv, images/, masks/;
code/sample.py, or code/make_standin_samples.py --copies 3 as a stand-in) with at least
max(R)·N_real non-empty pairs per fold. Writes OUT/nnunet/ (nnU-Net's raw, preprocessed and
results folders), OUT/logs/, OUT/entries.csv ((fold, R) -> nnU-Net fold), OUT/models/ (each trained
entry as safetensors weights, plans and their sha256), OUT/predictions/,
OUT/per_image.csv (fold, R, case, dice, hd95), OUT/summary.json, FIG_DIR/fig9.{png,pdf},
TABLE_DIR/fig9.{csv,md,tex} and, with --results, the report's long-format numbers. On a rerun a
finished training is skipped while its export matches its recorded sha256, and predictions are
kept while every PNG does; changed inputs redo what depends on them.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from iusdiff.cli import cases_argument, positive_int, run, save_options
from iusdiff.data.slices import load_dataset
from iusdiff.errors import InputError
from iusdiff.evaluation.downstream import (
    METRICS,
    Entry,
    Study,
    Workspace,
    build_raw_dataset,
    evaluate,
    fig9,
    fig9_numbers,
    fig9_table,
    limit_cpu_threads,
    load_study,
    metric_stats,
    plan_and_preprocess,
    predict_entry,
    restore_matplotlib_defaults,
    set_nnunet_environment,
    summary_json,
    train_entry,
    write_per_image,
    write_splits,
)
from iusdiff.io import write_json
from iusdiff.outputs.plotting import save_figure
from iusdiff.outputs.results import write_results
from iusdiff.outputs.tables import write_table
from iusdiff.pipeline.config import add_settings_arguments, load_stage_settings
from iusdiff.pipeline.workers import map_items, stage_workers


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=Path, required=True, help="folder written by prepare_data.py")
    parser.add_argument("--samples", type=Path, required=True, help="synthetic pairs in the sample contract (fold{K}/manifest.csv)")
    parser.add_argument("--out", type=Path, required=True, help="working and output folder (resumable)")
    add_settings_arguments(parser)
    parser.add_argument("--fig-dir", type=Path, help="where fig9.{png,pdf} go (default: --out)")
    parser.add_argument("--table-dir", type=Path, help="where fig9.{csv,md,tex} go (default: --out)")
    parser.add_argument("--results", type=Path, help="long-format numbers for the report (e.g. results/fig9.csv)")
    parser.add_argument("--folds", type=cases_argument, help="folds to train, e.g. 1-5")
    parser.add_argument("--ratios", type=cases_argument, help="R values, e.g. 0,1,2,3")
    parser.add_argument("--trainer", help="nnU-Net trainer class (iusdiff's short ones: "
                        "nnUNetTrainer_iusdiffDefault, nnUNetTrainer_iusdiffSmoke)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="torch device for nnU-Net")
    parser.add_argument("--seed", type=int, help="seeds each training (with its fold and R)")
    parser.add_argument("--workers", type=positive_int, help="processes for preprocessing")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads for training and inference (cpu only)")
    args = parser.parse_args(argv)
    settings = load_stage_settings(args, ["downstream"])
    for key, value in settings["sections"]["downstream"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.label = settings["profile"]["provenance"]
    return args


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available to torch (use --device cpu)")


def prepare_study(args: argparse.Namespace) -> tuple[Study, list[str]]:
    """Check every input before any work; return the study and the labels its outputs carry."""
    study = load_study(load_dataset(args.slices), args.samples, sorted(set(args.folds)), sorted(set(args.ratios)))
    check_device(args.device)
    labels = [args.label]
    return study, labels + ([study.generator] if study.generator else [])


def build_and_preprocess(study: Study, work: Workspace, workers: int, timings: dict) -> str:
    """The nnU-Net dataset, its integrity check, planning and preprocessing, and the splits."""
    started = time.monotonic()
    raw_digest = build_raw_dataset(study, work)
    built = time.monotonic()
    preprocess_key = plan_and_preprocess(work, raw_digest, workers)
    write_splits(study, work)
    timings.update(raw_dataset_s=round(built - started, 2), plan_and_preprocess_s=round(time.monotonic() - built, 2))
    n_cases = len(study.development) + sum(len(p) for p in study.synthetic.values())
    print(f"downstream: {n_cases} training cases, {len(study.test)} test images, {len(study.entries)} entries; "
          f"raw dataset {timings['raw_dataset_s']} s, plan and preprocess {timings['plan_and_preprocess_s']} s")
    return preprocess_key


@dataclass(frozen=True)
class EntryJob:
    """What a worker process needs to train and test one (fold, R) entry."""

    entry: Entry
    study: Study
    work: Workspace
    trainer: str
    device: str
    seed: int
    threads: int
    preprocess_key: str


def run_entry(job: EntryJob) -> tuple[str, dict]:
    """Train one entry (or skip it when finished), then predict the test images; returns its
    log line and timings. Seeded per entry, so the process it runs in does not matter."""
    limit_cpu_threads(job.device, job.threads)
    started = time.monotonic()
    train_key, trained = train_entry(job.entry, job.work, job.trainer, job.device, job.seed, job.preprocess_key)
    middle = time.monotonic()
    predicted = predict_entry(job.entry, job.study, job.work, job.device, train_key)
    ended = time.monotonic()
    done = f"trained in {middle - started:.1f} s" if trained else "already trained"
    done += f", predicted in {ended - middle:.1f} s" if predicted else ", predictions up to date"
    line = f"downstream: {job.entry.name} (nnU-Net fold {job.entry.index}, {len(job.entry.train)} training cases): {done}"
    return line, {"train_s": round(middle - started, 2) if trained else None,
                  "predict_s": round(ended - middle, 2) if predicted else None}


def train_and_predict(study: Study, work: Workspace, args: argparse.Namespace, preprocess_key: str, timings: dict) -> None:
    """Every (fold, R) entry, in the worker processes the pipeline granted (iusdiff.pipeline.workers)."""
    jobs = [EntryJob(entry, study, work, args.trainer, args.device, args.seed, args.threads, preprocess_key)
            for entry in study.entries]
    workers = stage_workers(args.device)
    for job, (line, timing) in zip(jobs, map_items(run_entry, jobs, workers), strict=True):
        timings[job.entry.name] = timing
        print(line)


def report(study: Study, work: Workspace, args: argparse.Namespace, labels: list[str]) -> None:
    """Per-image metrics, statistics, Fig. 9 and its table."""
    restore_matplotlib_defaults()
    rows = evaluate(study, work)
    write_per_image(rows, args.out / "per_image.csv")
    stats = {metric: metric_stats(rows, metric) for metric in METRICS}
    write_json(args.out / "summary.json", summary_json(stats, labels, study.entries))
    if args.results:
        write_results(args.results, fig9_numbers(stats, labels))
    for path in save_figure(fig9(stats, labels), (args.fig_dir or args.out) / "fig9"):
        print(f"downstream: wrote {path}")
    for path in write_table(fig9_table(stats, labels), args.table_dir or args.out):
        print(f"downstream: wrote {path}")


def main(argv=None) -> int:
    args = parse_args(argv)
    study, labels = prepare_study(args)
    work = Workspace(args.out)
    set_nnunet_environment(work, args.workers)
    limit_cpu_threads(args.device, args.threads)
    timings: dict = {}
    preprocess_key = build_and_preprocess(study, work, args.workers, timings)
    train_and_predict(study, work, args, preprocess_key, timings)
    write_json(work.logs / "timings.json", timings)
    report(study, work, args, labels)
    save_options(args.out / "options.json", args, generator=study.generator)
    return 0


if __name__ == "__main__":
    run(main)
