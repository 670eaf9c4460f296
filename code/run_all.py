#!/usr/bin/env python3
"""Run every stage of a profile (see run_all.sh), or verify a finished run's checksums.

    ./run_all.sh --profile {smoke,default,paper} [--out DIR] [--force STAGE ...] [--publish]
    ./run_all.sh --profile paper --fold 3          # one fold's share (a cluster job); rerun without --fold to merge
    ./run_all.sh --profile default --stage table1  # one stage (its inputs must exist)
    ./run_all.sh --profile default --verify
    ./run_all.sh --profile paper --check            # only the start-up checks: data and weights in place?
    ./run_all.sh --profile default --set ldm_mask.steps=1000 --plan   # what a changed setting reruns
    ./run_all.sh --profile smoke --show-settings     # every resolved value and where it comes from
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from iusdiff import __version__
from iusdiff.cli import positive_int, run
from iusdiff.errors import InputError, Interrupted
from iusdiff.io import write_json
from iusdiff.pipeline.config import PROFILES, load_profile, provenance
from iusdiff.pipeline.runner import MANIFEST, Context, StageFailed, plan_pipeline, publish, run_pipeline, startup_checks, verify
from iusdiff.pipeline.settings import resolve, show_settings
from iusdiff.pipeline.stages import STAGES, check_cached, data_roots, weights_root


REPO = Path(__file__).resolve().parents[1]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one setting for this run (repeatable; VALUE in TOML, checked against the schema)")
    parser.add_argument("--show-settings", action="store_true", help="print every resolved setting and where it comes from, and exit")
    parser.add_argument("--plan", action="store_true", help="list the stages a run would rerun, and why, without running them")
    parser.add_argument("--out", type=Path, help="output folder (default: outputs/<profile> in the repository)")
    parser.add_argument("--resect-root", type=Path, help="RESECT root for real-data profiles (default from the profile)")
    parser.add_argument("--seg-root", type=Path, help="RESECT-SEG root for real-data profiles (default from the profile)")
    parser.add_argument("--weights", type=Path, help="folder holding the profile's weights: the SD-1.5 folder and "
                        "medsam_vit_b.pth (default: weights/ in the repository)")
    parser.add_argument("--force", nargs="+", default=[], metavar="STAGE", help="rerun these stages even if up to date")
    parser.add_argument("--fold", type=int, help="run only the shared data stages and this fold's work (one of the profile's folds)")
    parser.add_argument("--stage", help="run only this stage (all its folds, or --fold's)")
    parser.add_argument("--jobs", type=positive_int, help="fold instances of a stage run side by side (default: CPU cores / the profile's threads; 1 without pinned threads)")
    parser.add_argument("--no-stage-host", dest="stage_host", action="store_false", help="start a fresh Python per stage "
                        "instead of forking stages from one process that has imported torch (iusdiff.pipeline.stagehost)")
    parser.add_argument("--verify", action="store_true", help="only re-check OUT/checksums.sha256 and name changed files")
    parser.add_argument("--publish", action="store_true", help="copy OUT/tables and OUT/figures into the repository's tables/ and figures/")
    parser.add_argument("--cached-only", action="store_true", help="redraw tables and figures from finished intermediates only: "
                        "fail before any work if a training, sampling or evaluation stage would run (make tables, make figures)")
    parser.add_argument("--list", action="store_true", help="list the profile's stages and exit")
    parser.add_argument("--check", action="store_true", help="run only the start-up checks (data, weights) and exit")
    return parser.parse_args(argv)


def resolve_roots(args, profile) -> tuple[str, str]:
    """CLI roots win; real-data defaults from the profile are relative to the repository."""
    resect, seg = data_roots(profile)
    if profile["data"] != "phantom":
        resect, seg = str(REPO / resect), str(REPO / seg)
    if args.resect_root:
        resect = str(args.resect_root.resolve())
    if args.seg_root:
        seg = str(args.seg_root.resolve())
    return resect, seg


def default_jobs(profile: dict) -> int:
    """CPU profiles pin each stage to ``threads`` threads, so their folds can share the cores;
    GPU profiles run one stage at a time."""
    threads = profile["threads"]
    return max(1, (os.cpu_count() or 1) // threads) if threads else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    profile = load_profile(args.profile, args.overrides)
    if args.show_settings:
        print(show_settings(resolve(args.profile, tuple(args.overrides))))
        return 0
    folds = profile["folds"]
    if args.fold is not None and args.fold not in folds:
        raise InputError(f"--fold {args.fold}: profile '{args.profile}' runs folds {folds}")
    out = (args.out or REPO / "outputs" / args.profile).resolve()
    if args.verify:
        problems = verify(out)
        for line in problems:
            print(line)
        print(f"verify: {out / MANIFEST}: " + (f"{len(problems)} file(s) differ" if problems else "all files match"))
        return 1 if problems else 0
    resect, seg = resolve_roots(args, profile)
    weights = args.weights.resolve() if args.weights else None
    ctx = Context(profile=profile, out=out, repo=REPO, resect_root=resect, seg_root=seg, weights=weights)
    if args.list:
        width = max(len(stage.name) for stage in STAGES)
        for stage in STAGES:
            scope = "per fold" if stage.per_fold else "shared"
            print(f"{stage.name:<{width}} {'on ' if stage.enabled(ctx) else 'off'}  {scope:<8}  code/{stage.script}")
        return 0
    if args.plan:
        rows = plan_pipeline(ctx, STAGES, folds, fold=args.fold, only=args.stage, force=args.force)
        width = max(len(name) for name, _ in rows)
        for name, reason in rows:
            print(f"{name:<{width}}  {'up to date' if reason is None else 'runs: ' + reason}")
        print(f"run_all: plan: {sum(r is not None for _, r in rows)} of {len(rows)} stage(s) would run in {out}")
        return 0
    if args.check:
        print(f"run_all: start-up checks of profile '{args.profile}'\n         {provenance(profile)}")
        for line in startup_checks(ctx, STAGES):
            print(f"  {line}")
        print("run_all: start-up checks passed; nothing was run")
        return 0
    if args.cached_only:
        check_cached(ctx, folds, args.fold, args.stage)
    print(f"run_all: profile '{args.profile}' -> {out}\n         {provenance(profile)}")
    started = time.monotonic()
    try:
        jobs = args.jobs or default_jobs(profile)
        summary = run_pipeline(ctx, STAGES, force=args.force, folds=folds, fold=args.fold, only=args.stage, jobs=jobs,
                               stage_host=args.stage_host)
    except StageFailed as exc:
        print(f"run_all: {exc}; finished stages are kept, rerun to continue", file=sys.stderr)
        return exc.code
    except Interrupted as exc:
        print(f"interrupted: stopped {exc.stopped} running stage(s)", file=sys.stderr)
        return 128 + exc.signum
    total = time.monotonic() - started
    write_json(
        out / "run.json",
        {
            "profile": profile,
            "overrides": args.overrides,
            "out": str(out),
            "resect_root": resect,
            "seg_root": seg,
            "weights": str(weights_root(ctx)),
            "iusdiff_version": __version__,
            "python": platform.python_version(),
            "jobs": jobs,
            "stage_host": args.stage_host,
            "stage_seconds": summary.seconds,
            "total_seconds": round(total, 2),
        },
    )
    print(
        f"run_all: {len(summary.ran)} stage(s) ran, {len(summary.skipped)} up to date, {total:.1f} s; "
        f"{summary.files} files in {out / MANIFEST}"
    )
    if args.publish:
        copied = publish(out, REPO)
        print(f"run_all: published {len(copied)} files into {REPO / 'tables'} and {REPO / 'figures'}")
    return 0


if __name__ == "__main__":
    run(main)  # SIGTERM and SIGHUP too: the running stages are stopped before their locks are released
