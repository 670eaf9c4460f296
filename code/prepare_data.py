#!/usr/bin/env python3
"""Select, resize and write the 2-D iUS slices and masks of RESECT (or the phantom), with splits.

    python code/prepare_data.py --resect-root DIR --seg-root DIR --out DIR --size 256 [--cases ...]

Writes DIR/slices.csv (subject, slice_index, position_mm, tumour_fraction, image, mask and their
sha256), DIR/images/*.png, DIR/masks/*.png ({0,1}), DIR/splits.json (Table 1, fold 3 corrected)
and DIR/options.json. All inputs are checked first; DIR appears only when everything succeeded.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from iusdiff.cli import cases_argument, progress, run, save_options
from iusdiff.data.resect import check_case_files, load_case
from iusdiff.data.slices import check_size, write_case_slices, write_manifest, write_splits
from iusdiff.data.splits import CASES, check_cases, splits_for, validate_splits
from iusdiff.io import atomic_dir


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resect-root", type=Path, required=True, help="RESECT root (holding NIFTI/ or CaseN/)")
    parser.add_argument("--seg-root", type=Path, required=True, help="RESECT-SEG root (holding CaseN/)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--size", type=int, required=True, help="output side in pixels (power of two >= 32)")
    parser.add_argument("--cases", type=cases_argument, default=list(CASES), help="case numbers (default: all 23)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    check_size(args.size)
    args.cases = list(check_cases(args.cases))
    for case in args.cases:  # fail on a missing, empty or truncated file before any work
        check_case_files(args.resect_root, args.seg_root, case)
    splits = splits_for(args.cases)
    validate_splits(splits)
    records, vanished = [], {}
    with atomic_dir(args.out) as tmp:
        for case in progress(args.cases, desc="slices", unit="case"):
            case_records, case_vanished = write_case_slices(load_case(args.resect_root, args.seg_root, case), tmp, args.size)
            records.extend(case_records)
            if case_vanished:
                vanished[str(case)] = case_vanished
        write_manifest(tmp / "slices.csv", records)
        write_splits(tmp / "splits.json", splits)
        counts = Counter(r.subject for r in records)
        save_options(
            tmp / "options.json",
            args,
            slices_per_subject={str(k): v for k, v in sorted(counts.items())},
            dropped_tumour_vanished_in_resize=vanished,
        )
    print(f"prepare: {len(records)} slices from {len(args.cases)} cases at {args.size} px -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
