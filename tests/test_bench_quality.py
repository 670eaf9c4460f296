"""bench/quality.py on the finished smoke run (a reader of the shared run, so it runs beside the
other tests once the run is made): floors, ceiling, stand-in DSC, memorisation."""

from __future__ import annotations

from helpers import run_script


def test_quality_benchmark_prints_floors_ceiling_and_scores_per_model(smoke_run):
    result = run_script("../bench/quality.py", smoke_run, "--folds", "1", "--images", "8", "--models", "proposed,onestep")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("|")[2:] for line in result.stdout.splitlines() if line.startswith("| 1 |")]
    names = [row[0].strip() for row in rows]
    assert names == ["real held-out (floor)", "proposed", "proposed: VAE reconstructions (floor)", "proposed: untrained (ceiling)",
                     "onestep", "onestep: VAE reconstructions (floor)"]
    proposed = [cell.strip() for cell in rows[1]]
    assert float(proposed[2]) > 0 and 0 <= float(proposed[4]) <= 1  # FID, and the stand-in segmenter's DSC
