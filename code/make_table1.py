#!/usr/bin/env python3
"""Regenerate Table 1 (subjects and image counts per fold) from a prepared slices folder.

    python code/make_table1.py --slices DIR --out-dir DIR/tables --settings FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iusdiff.cli import run
from iusdiff.data.slices import load_dataset
from iusdiff.outputs.layout import result_file
from iusdiff.outputs.results import write_results
from iusdiff.outputs.tables import write_table
from iusdiff.pipeline.config import add_settings_arguments, load_stage_settings
from iusdiff.report.table1 import build_table1, table1_numbers


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=Path, required=True, help="folder written by prepare_data.py")
    parser.add_argument("--out-dir", type=Path, required=True, help="where table1.{csv,md,tex} go")
    add_settings_arguments(parser)
    parser.add_argument("--results", type=Path, default=Path(result_file("table1")), help="long-format numbers for the report")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    dataset, label = load_dataset(args.slices), load_stage_settings(args, [])["profile"]["provenance"]
    for path in write_table(build_table1(dataset, label), args.out_dir):
        print(f"table1: wrote {path}")
    write_results(args.results, table1_numbers(dataset, label))
    return 0


if __name__ == "__main__":
    run(main)
