"""Training throughput of every model in a finished run, as a table.

Samples/s = optimisation steps × batch size / the stage's wall time (from the runner's records),
per fold and averaged. The wall time includes process start-up (~4 s of imports), validation and
checkpoints, so this is what a user waits for, not the bare step rate. With several stages at a
time (``--jobs``), each process had one thread.

    PYTHONPATH=code python bench/training.py outputs/default
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from iusdiff.pipeline.runner import STATE_DIR

TRAININGS = ("vae_image", "vae_mask", "ldm_mask", "ldm_ius", "pix2pix", "vae_joint", "ldm_onestep", "controlnet")


def samples_trained(options: dict) -> int:
    """steps × batch of one fold's training; the ControlNet's two phases are added up."""
    settings = options["settings"]
    phases = [settings[key] for key in ("phase_a", "phase_b") if key in settings]
    if phases:
        return sum(int(p["steps"]) * int(p["batch_size"]) for p in phases)
    return int(options["steps"]) * int(settings["batch_size"])


def model_rows(out: Path) -> list[dict]:
    rows = []
    for model in TRAININGS:
        folds = sorted((out / "models" / model).glob("fold*/options.json"))
        if not folds:
            continue
        samples = seconds = 0.0
        for options_path in folds:
            stage = json.loads((out / STATE_DIR / f"{model}@{options_path.parent.name}.json").read_text())
            samples += samples_trained(json.loads(options_path.read_text()))
            seconds += stage["seconds"]
        rows.append({"model": model, "folds": len(folds), "samples": samples / len(folds), "seconds": seconds / len(folds)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a finished run's output folder (e.g. outputs/default)")
    out = parser.parse_args().out
    print(f"\n{out}: per fold, averaged over folds\n")
    print("| model | folds | samples per fold | s per fold | samples/s |")
    print("|---|---|---|---|---|")
    for row in model_rows(out):
        print(f"| {row['model']} | {row['folds']} | {row['samples']:.0f} | {row['seconds']:.1f} | {row['samples'] / row['seconds']:.1f} |")


if __name__ == "__main__":
    main()
