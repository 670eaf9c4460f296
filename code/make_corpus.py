#!/usr/bin/env python3
"""Write the outside pretraining corpus: phantom subjects that are in no split of the study.

    python code/make_corpus.py --out DIR --subjects 100 [--seed 1] [--scale 1.0] --size 64
                               [--validation-subjects 4] [--montage PNG] [--resume]

DIR is a prepared slices folder (slices.csv, images/, masks/, options.json) like
prepare_data.py's, sliced by the same rules, whose splits.json holds the corpus's own training
and validation subjects (case numbers 1001, 1002, ...: no RESECT case number) and is labelled as
a pretraining corpus. pretrain stages train the CPU profiles' base models on it once, before
the folds (see iusdiff/data/corpus.py). Same arguments give byte-identical files; DIR appears only
when complete.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from iusdiff.cli import run
from iusdiff.data.corpus import LABEL, corpus_cases, corpus_splits, write_corpus
from iusdiff.data.slices import check_size, load_dataset, write_manifest, write_splits
from iusdiff.generator.training import run_key
from iusdiff.io import atomic_dir
from iusdiff.outputs.plotting import save_figure, slice_montage
from iusdiff.pipeline.runs import completed, save_completion, script_digest


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--subjects", type=int, required=True, help="number of corpus subjects")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="voxels per axis relative to the full phantom")
    parser.add_argument("--size", type=int, required=True, help="slice side in pixels (power of two >= 32)")
    parser.add_argument("--validation-subjects", type=int, default=4, help="corpus subjects held out to pick the best model")
    parser.add_argument("--montage", type=Path, help="PNG of one slice per subject (first 24 subjects)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    parser.add_argument("--resume", action="store_true", help="keep OUT when it holds this very corpus (same settings and code)")
    return parser.parse_args(argv)


def corpus_key(args) -> str:
    """Identity of a corpus: what shapes its files (not the worker count or the montage)."""
    settings = {k: getattr(args, k) for k in ("subjects", "seed", "scale", "size", "validation_subjects")}
    return run_key(settings, script_digest(__file__))


def main(argv=None) -> int:
    args = parse_args(argv)
    check_size(args.size)
    cases = corpus_cases(args.subjects)
    splits = corpus_splits(cases, args.validation_subjects)
    key = corpus_key(args)
    if args.resume and completed(args.out, key):
        print(f"corpus: {args.out} up to date")
    else:
        with atomic_dir(args.out) as tmp:
            records = write_corpus(tmp, cases, args.seed, args.scale, args.size, args.workers)
            write_manifest(tmp / "slices.csv", records)
            write_splits(tmp / "splits.json", splits)
            save_completion(tmp, args, key, kind=LABEL, cases=list(cases), slices=len(records))
    dataset = load_dataset(args.out)
    if args.montage:
        shown = [next(r for r in dataset.records if r.subject == case) for case in cases[:24]]
        fig = slice_montage([dataset.image(r) for r in shown], [dataset.mask(r) for r in shown], [f"Case{r.subject}" for r in shown])
        save_figure(fig, args.montage.with_suffix(""), formats=("png",), dpi=150)
    print(f"corpus: {len(dataset.records)} slices from {len(cases)} subjects ({cases[0]}-{cases[-1]}) at {args.size} px -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
