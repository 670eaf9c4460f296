"""The reproduction report: every number the paper reports beside ours, with context.

It lists, per paper item, the paper's value, ours, their difference and the label that says
where ours came from (profile, phantom, stand-ins). Numbers the run did not produce are listed
as missing, never filled in. Software versions, the device, the wall time of every stage and
the checksum summary follow.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from iusdiff.outputs.results import Number

PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "nnunetv2", "segment-anything", "numpy", "scipy", "statsmodels", "pingouin", "surface-distance", "opencv-python-headless")
ITEMS = ("Table 1", "Table 2", "Table 3", "Table 4", "Fig. 8", "Fig. 9")


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"


def comparison_section(paper: Sequence[Number], ours: Sequence[Number]) -> list[str]:
    """One Markdown table per item: paper, reproduced, Δ (ours − paper), our label."""
    mine = {(n.item, n.key): n for n in ours}
    lines = []
    for item in ITEMS:
        rows = [n for n in paper if n.item == item]
        found = [n for n in rows if (item, n.key) in mine]
        lines += ["", f"### {item}", ""]
        if not found:
            lines.append(f"Not reproduced in this run ({len(rows)} numbers): the stages that produce them are not part of this profile yet.")
            continue
        labels = sorted({mine[(item, n.key)].label for n in found})
        lines += [f"Ours: {label}" for label in labels] + [""]
        lines += ["| quantity | paper | reproduced | Δ |", "|---|---|---|---|"]
        for number in rows:
            match = mine.get((item, number.key))
            if match is None:
                lines.append(f"| {number.key} | {_fmt(number.value)} | missing | |")
            else:
                lines.append(f"| {number.key} | {_fmt(number.value)} | {_fmt(match.value)} | {_fmt(match.value - number.value)} |")
    return lines


def software_section() -> list[str]:
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return ["", "## Software and device", "", f"- Python {platform.python_version()} on {platform.platform()}", f"- {', '.join(versions)}", f"- Device: {device_description()}"]


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"CPU {model}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}"


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.is_file() else []


def timing_section(records: Sequence[dict]) -> list[str]:
    lines = ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    total = 0.0
    for record in records:
        lines.append(f"| {record['stage']} | {record['seconds']:.1f} |")
        total += record["seconds"]
    lines.append(f"| total | {total:.1f} |")
    return lines


def stage_records(out: Path) -> list[dict]:
    """Stage records in the order they were written (the pipeline's order)."""
    paths = sorted((out / ".stages").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in paths]


def render(profile: str, provenance: str, paper: Sequence[Number], ours: Sequence[Number], records: Sequence[dict], manifest_files: int) -> str:
    lines = [
        f"# Reproduction report: profile '{profile}'",
        "",
        f"Data: {provenance}.",
        "Each reproduced number stands beside the number the paper prints (`paper/*.csv`, with its source); "
        "Δ = reproduced − paper. A number the run did not produce is listed as missing.",
        "",
        "## Paper vs reproduced",
        *comparison_section(paper, ours),
        *software_section(),
        *timing_section(records),
        "",
        "## Checksums",
        "",
        f"{manifest_files} intermediate files are listed with their sha256 in `checksums.sha256`. "
        f"Re-check them with `./run_all.sh --profile {profile} --out <this folder> --verify`.",
    ]
    return "\n".join(lines) + "\n"
