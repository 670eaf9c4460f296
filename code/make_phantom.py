#!/usr/bin/env python3
"""Write the embedded B-mode iUS phantom in the RESECT + RESECT-SEG layout.

    python code/make_phantom.py --out DIR [--seed 0] [--cases 1,2,5-8] [--scale 1.0]

DIR/RESECT/NIFTI/CaseN/US/CaseN-US-before.nii.gz, DIR/RESECT_segmentation/CaseN/...-tumor.nii.gz,
a montage PNG of each case's peak tumour slice (--montage, default DIR/montage.png) and
DIR/options.json. Same seed and scale
give byte-identical files; the folder appears only when everything was written.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from iusdiff.cli import cases_argument, run, save_options
from iusdiff.data.phantom import write_phantom
from iusdiff.data.splits import CASES, check_cases
from iusdiff.io import atomic_dir
from iusdiff.outputs.plotting import save_figure, slice_montage


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=cases_argument, default=list(CASES), help="case numbers (default: all 23)")
    parser.add_argument("--scale", type=float, default=1.0, help="voxels per axis relative to the full phantom (0.5 = 8x fewer)")
    parser.add_argument("--montage", type=Path, help="montage PNG path (default: OUT/montage.png)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.cases = list(check_cases(args.cases))
    with atomic_dir(args.out) as tmp:
        peaks = write_phantom(tmp, args.cases, args.seed, args.scale, args.workers)
        save_options(tmp / "options.json", args, kind="phantom")
    fig = slice_montage([p[1] for p in peaks], [p[2] for p in peaks], [f"Case{p[0]}" for p in peaks])
    save_figure(fig, (args.montage or args.out / "montage.png").with_suffix(""), formats=("png",), dpi=150)
    print(f"phantom: {len(args.cases)} cases written to {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
