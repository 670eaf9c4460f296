#!/usr/bin/env python3
"""Write the reproduction report: the paper's numbers beside ours, versions, device, times.

    python code/make_report.py --results results --settings FILE --out report.md

Run inside a pipeline output folder (it reads .stages/ and checksums.sha256 there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iusdiff.cli import run
from iusdiff.io import write_text
from iusdiff.outputs.layout import MANIFEST, REPORT_FILE, RESULTS_DIR
from iusdiff.outputs.results import paper_numbers, read_results
from iusdiff.pipeline.config import add_settings_arguments, load_stage_settings
from iusdiff.pipeline.runner import read_manifest
from iusdiff.report.reproduction import render, stage_records


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(RESULTS_DIR), help="folder of results/*.csv")
    add_settings_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path(REPORT_FILE))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    profile = load_stage_settings(args, [])["profile"]
    folder = args.out.resolve().parent
    text = render(
        profile["name"],
        profile["provenance"],
        paper_numbers(),
        read_results(args.results),
        stage_records(folder),
        len(read_manifest(folder / MANIFEST)),
    )
    write_text(args.out, text)
    print(f"report: wrote {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
