"""Time the phases of the downstream nnU-Net study (Fig. 9) on this machine.

Builds the study's nnU-Net dataset from a slices folder with the project's stand-in pairs
(R up to 3, the chosen folds), runs nnU-Net's integrity check and planning/preprocessing, then trains and
predicts a few (fold, R) entries with each requested trainer, and prints one Markdown table.

    PYTHONPATH=code python bench/downstream.py [--slices outputs/default/slices] [--folds 1-5]
        [--entries 2] [--trainers nnUNetTrainer_iusdiffSmoke,nnUNetTrainer_iusdiffDefault] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iusdiff.cli import cases_argument
from iusdiff.data.slices import load_dataset
from iusdiff.evaluation import downstream as ds


def timed(rows: list[tuple[str, str, float, str]], phase: str, count: int, unit: str, call, rate: bool = True):
    """Run ``call()``, append (phase, size, seconds, time per unit) to ``rows``, return its value."""
    started = time.monotonic()
    value = call()
    seconds = time.monotonic() - started
    per_unit = f"{1000 * seconds / max(count, 1):.1f} ms/{unit.rstrip('s')}" if rate else ""
    rows.append((phase, f"{count} {unit}", seconds, per_unit))
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=Path, default=Path("outputs/default/slices"))
    parser.add_argument("--folds", type=cases_argument, default=[1, 2, 3, 4, 5])
    parser.add_argument("--entries", type=int, default=2, help="entries trained per trainer (first fold, R = 0 and 3 first)")
    parser.add_argument("--trainers", default="nnUNetTrainer_iusdiffSmoke,nnUNetTrainer_iusdiffDefault")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = parser.parse_args()

    dataset = load_dataset(args.slices)
    rows: list[tuple[str, str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="iusdiff-bench-") as tmp:
        work = ds.Workspace(Path(tmp))
        n_pairs = sum(max(ds.RATIOS) * len(dataset.select(f, "train")) for f in args.folds)
        standin = [sys.executable, "code/make_standin_samples.py", "--slices", str(args.slices), "--out", str(work.root / "samples"),
                   "--copies", str(max(ds.RATIOS)), "--folds", ",".join(map(str, args.folds))]
        timed(rows, "stand-in pairs (make_standin_samples.py)", n_pairs, "pairs", lambda: subprocess.run(standin, check=True, capture_output=True))
        study = ds.load_study(dataset, work.root / "samples", args.folds, list(ds.RATIOS))
        n_cases = len(study.development) + n_pairs
        ds.set_nnunet_environment(work, args.workers)
        ds.limit_cpu_threads("cpu", args.threads)
        digest = timed(rows, "raw dataset", n_cases, "cases", lambda: ds.build_raw_dataset(study, work))
        timed(rows, "integrity check alone", n_cases, "cases", lambda: ds.verify_raw_dataset(work, args.workers))
        key = timed(rows, "integrity + plan + preprocess", n_cases, "cases", lambda: ds.plan_and_preprocess(work, digest, args.workers))
        ds.write_splits(study, work)
        chosen = sorted(study.entries, key=lambda e: (e.ratio not in (0, 3), e.index))[: args.entries]
        for trainer in args.trainers.split(","):
            for entry in chosen:
                train_key, _ = timed(rows, f"train {entry.name} ({trainer})", len(entry.train), "cases",
                                     lambda: ds.train_entry(entry, work, trainer, "cpu", 0, key), rate=False)
                timed(rows, f"predict {entry.name} ({trainer})", len(study.test), "images",
                      lambda: ds.predict_entry(entry, study, work, "cpu", train_key))
    print("| phase | size | seconds | rate |\n|---|---|---|---|")
    for phase, size, seconds, rate in rows:
        print(f"| {phase} | {size} | {seconds:.1f} | {rate} |")
    print(f"\n{os.cpu_count()} CPUs, torch threads {args.threads}, preprocessing workers {args.workers}; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end (the machine may be shared).")


if __name__ == "__main__":
    main()
