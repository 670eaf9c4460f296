"""Wall time and peak memory of every stage of a finished run, as a table.

The stage runner records each stage's wall time and the peak resident memory of its process
(``.stages/<stage>.json``). Per-fold instances (``ldm_ius@fold3``) are summed per stage, with
the largest single-process peak. Run a profile first, then print its table:

    ./run_all.sh --profile default --out outputs/default
    PYTHONPATH=code python bench/stages.py outputs/default [outputs/smoke ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from iusdiff.pipeline.runner import STATE_DIR
from iusdiff.pipeline.stages import STAGES


def stage_rows(out: Path) -> list[dict]:
    """One row per stage (folds merged), in pipeline order."""
    order = {stage.name: index for index, stage in enumerate(STAGES)}
    records = [json.loads(p.read_text()) for p in sorted((out / STATE_DIR).glob("*.json"))]
    records.sort(key=lambda r: order.get(r["stage"].split("@", 1)[0], len(order)))
    rows: dict[str, dict] = {}
    for record in records:
        base = record["stage"].split("@", 1)[0]
        row = rows.setdefault(base, {"stage": base, "instances": 0, "seconds": 0.0, "peak_mib": None})
        row["instances"] += 1
        row["seconds"] += record["seconds"]
        if record.get("peak_rss_mib") is not None:
            row["peak_mib"] = max(row["peak_mib"] or 0.0, record["peak_rss_mib"])
    return list(rows.values())


def print_table(out: Path) -> None:
    rows = stage_rows(out)
    if not rows:
        raise SystemExit(f"{out}: no stage records in {out / STATE_DIR} (run ./run_all.sh --out {out} first)")
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    profile = run.get("profile", {}).get("name", "?")
    print(f"\n{out} (profile {profile}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores)")
    if run:
        host = {True: "on", False: "off"}.get(run.get("stage_host"), "not recorded")
        print(f"last invocation: {run['total_seconds']:.0f} s wall, --jobs {run['jobs']}, stage host {host}")
    print()
    print(f"| {'stage':<18} | runs | {'wall s':>8} | {'peak MiB':>8} |")
    print(f"|{'-' * 20}|------|{'-' * 10}|{'-' * 10}|")
    for row in rows:
        peak = f"{row['peak_mib']:8.0f}" if row["peak_mib"] is not None else f"{'n/a':>8}"
        print(f"| {row['stage']:<18} | {row['instances']:>4} | {row['seconds']:8.1f} | {peak} |")
    total = sum(r["seconds"] for r in rows)
    print(f"| {'total':<18} |      | {total:8.1f} | {'':>8} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", nargs="+", type=Path, help="output folders of finished runs")
    for out in parser.parse_args().outs:
        print_table(out)


if __name__ == "__main__":
    main()
