"""bench/paper_ldm.py only gets its real numbers on a GPU; on a CPU its --tiny mode must still
run every config path it offers (precision, attention processor, memory format) and print them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "code"))
    return subprocess.run([sys.executable, str(REPO / "bench" / "paper_ldm.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


def test_tiny_run_prints_a_row_per_config() -> None:
    configs = ["fp32", "bf16", "bf16+math", "fp32+channels_last"]
    result = run_bench("--tiny", "--device", "cpu", "--batch", "2", "--size", "64", "--steps", "1", "--warmup", "1",
                       "--peak-tflops", "1", "--configs", ",".join(configs))
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and "config" not in line]
    assert [row[0].strip() for row in rows] == configs
    for row in rows:
        seconds, samples, _, tflops, mfu, hours = (cell.strip() for cell in row[1:])
        assert float(seconds) > 0 and float(samples) > 0 and float(tflops) > 0 and float(hours) > 0
        assert mfu.endswith("%")
    assert "tiny UNet, batch 2, 64 px" in result.stdout


def test_unknown_config_is_refused(monkeypatch) -> None:
    """In process: the subprocess would import torch and diffusers only to refuse the name."""
    spec = importlib.util.spec_from_file_location("paper_ldm", REPO / "bench" / "paper_ldm.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit, match="'bf16\\+fp8'"):
        bench.main(["--tiny", "--device", "cpu", "--configs", "bf16+fp8"])
