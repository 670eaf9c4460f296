"""Synthetic pairs on demand (code/generate.py, iusdiff.generator.generate) from the smoke run's
fold-1 models, in process and at two sampler steps; the smoke run stays read-only."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import generate as script
from helpers import read_only
from iusdiff.cli import run
from iusdiff.generator.data import seed_for
from iusdiff.io import load_png

FAST = ("--steps", "2")


def draw(smoke_run, out, *extra) -> None:
    with read_only(smoke_run):
        assert script.main(["--models", str(smoke_run), "--fold", "1", "--out", str(out), *FAST, *extra]) == 0


def test_nnunet_dataset_passes_nnunets_integrity_check(smoke_run, tmp_path, monkeypatch):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):  # as downstream.set_nnunet_environment
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    out = tmp_path / "nnUNet_raw" / "Dataset902_IUSsynthetic"
    draw(smoke_run, out, "--n", "8", "--format", "nnunet")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "tumour": 1} and meta["channel_names"] == {"0": "iUS"}
    assert meta["numTraining"] == 8 and meta["file_ending"] == ".png" and meta["name"] == out.name
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [f"syn_{i:05d}_0000.png" for i in range(8)]
    assert all(set(np.unique(load_png(p))) <= {0, 1} for p in (out / "labelsTr").iterdir())
    verify_dataset_integrity(str(out), num_processes=1)  # raises on any problem it finds


def test_png_pairs_repeat_byte_for_byte_and_record_their_options(smoke_run, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    for out in (first, again):
        draw(smoke_run, out, "--n", "4", "--seed", "7")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file() and p.name != "options.json")
    assert len(files) == 9  # 4 masks, 4 images, manifest.csv
    assert all((first / rel).read_bytes() == (again / rel).read_bytes() for rel in files)
    size = json.loads((smoke_run / "run.json").read_text())["profile"]["size"]
    for index in range(4):
        mask, image = load_png(first / "masks" / f"{index:05d}.png"), load_png(first / "images" / f"{index:05d}.png")
        assert mask.shape == image.shape == (size, size) and set(np.unique(mask)) <= {0, 1}
    picked = json.loads((smoke_run / "samples/proposed/fold1/options.json").read_text())
    rows = list(csv.DictReader((first / "manifest.csv").read_text().splitlines()))
    assert [int(r["seed"]) for r in rows] == [seed_for(7, 1, i) for i in range(4)]
    assert {(r["sampler"], r["steps"], float(r["w"])) for r in rows} == {(picked["settings"]["sampler"], "2", picked["w"])}
    options = json.loads((first / "options.json").read_text())
    assert options["options"]["n"] == 4 and options["defaults_from"].endswith("samples/proposed/fold1/options.json")
    assert options["generation"] | {"models": None} == {
        "n": 4, "format": "png", "fold": 1, "seed": 7, "w": picked["w"], "sampler": picked["settings"]["sampler"],
        "steps": 2, "batch_size": picked["settings"]["batch_size"], "device": "cpu", "models": None,
    }


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--vae-mask", "{tmp}/nowhere"), "{tmp}/nowhere: no such model folder (vae_mask)"),
        (("--models", "{tmp}"), "{tmp}/models/vae_mask/fold1/model: no trained model (run the training stage for fold 1 first)"),
        (("--fold", "7"), "fold 7: expected one of the paper's folds [1, 2, 3, 4, 5]"),
        (("--n", "0"), "n = 0: at least one pair"),
        (("--format", "tiff"), "unknown format 'tiff'; choose one of png, nnunet"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(smoke_run, tmp_path, capsys, extra, message):
    argv = ["--models", str(smoke_run), "--n", "2", "--out", str(tmp_path / "out"), *(a.format(tmp=tmp_path) for a in extra)]
    with read_only(smoke_run), pytest.raises(SystemExit) as exited:
        run(script.main, argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {message.format(tmp=tmp_path)}"]
    assert not (tmp_path / "out").exists()
