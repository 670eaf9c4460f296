"""Pix2Pix training and inference: exact resume, the LR schedule, the sample contract, bad input."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import sample_pix2pix
import train_pix2pix
from iusdiff.baselines.pix2pix import LEARNING_RATE, Pix2PixTask, Schedule, UNetGenerator, resolve_schedule, translate
from iusdiff.data.slices import SliceRecord, write_manifest as write_slices_manifest, write_splits
from iusdiff.errors import InputError
from iusdiff.generator.data import Augmentation
from iusdiff.generator.tasks import PairedBatches
from iusdiff.generator.training import CHECKPOINTS, MODEL_DIR, LoopConfig, make_accelerator, run_key, set_determinism, train
from iusdiff.io import load_png, save_png, sha256_file
from iusdiff.outputs.samples import Sample, read_manifest, write_manifest
from iusdiff.pipeline.config import load_profile
from iusdiff.pipeline.runner import Context, prepare_job
from iusdiff.pipeline.stages import STAGES

from helpers import REPO, InterruptAt, Interrupted, fold_data


SIZE = 32
CFG = {"ngf": 4, "ndf": 4, "disc_layers": 3, "test_mode": "train"}
LOOP = LoopConfig(steps=4, validation_steps=2, checkpointing_steps=2)


def task() -> Pix2PixTask:
    set_determinism(0)
    acc = make_accelerator("no")
    batches = PairedBatches(fold_data(6, 0), Augmentation(), 2, seed=5, accelerator=acc)
    return Pix2PixTask(batches, fold_data(3, 1), CFG, Schedule(constant=2, decay=2, unit_steps=1), SIZE, acc)


def run(t, out: Path, resume: bool = False):
    return train(t, LOOP, out, run_key("pix2pix-test"), t.acc, resume, desc="test", log=lambda _: None)


def log_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {f"{p.name}/{k}": v for p in sorted(folder.glob("*.safetensors")) for k, v in load_file(p).items()}


def test_interrupted_run_resumes_into_the_uninterrupted_one(tmp_path):
    straight = run(task(), tmp_path / "straight")
    with pytest.raises(Interrupted):
        run(InterruptAt(task(), 2), tmp_path / "resumed")
    assert [p.name for p in (tmp_path / "resumed" / CHECKPOINTS).iterdir()] == ["step-0000002"]
    resumed = run(task(), tmp_path / "resumed", resume=True)
    assert resumed.history == straight.history and resumed.validation == straight.validation
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "straight")
    for folder in (MODEL_DIR, f"{CHECKPOINTS}/step-0000004"):  # generator, discriminator and optimizer states
        a, b = weights(tmp_path / "straight" / folder), weights(tmp_path / "resumed" / folder)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # constant for 2 steps, then linear decay (the reference's per-epoch rule, counted in steps)
    assert [row["lr"] for row in straight.history] == pytest.approx([LEARNING_RATE, LEARNING_RATE, LEARNING_RATE * 2 / 3, LEARNING_RATE / 3])


def test_training_lowers_l1_on_a_fixed_batch():
    t = task()
    first = t.train_step(0)["g_l1"]
    for _ in range(7):  # step 0 again: same batch, augmentation and dropout
        last = t.train_step(0)["g_l1"]
    assert last < first


def test_validation_leaves_the_model_unchanged_and_is_reproducible():
    t = task()
    before = {k: v.clone() for k, v in t.generator.state_dict().items()}
    score = t.validate()
    assert score == t.validate() and 0 < score < 2
    assert all(torch.equal(before[k], v) for k, v in t.generator.state_dict().items())  # running stats too


def test_test_modes_train_keeps_seeded_dropout_eval_drops_it():
    torch.manual_seed(0)
    generator, cpu = UNetGenerator(5, ngf=4), torch.device("cpu")
    generator.train()
    for _ in range(3):  # give the running statistics something to hold
        generator(torch.rand(2, 1, SIZE, SIZE) * 2 - 1)
    masks = np.repeat(fold_data(1, 4).masks, 2, axis=0)
    train_mode = translate(generator, masks, [1, 2], "train", cpu)
    assert not np.array_equal(train_mode[0], train_mode[1])  # same mask, different dropout draws
    assert np.array_equal(train_mode, translate(generator, masks, [1, 2], "train", cpu))
    eval_mode = translate(generator, masks, [1, 2], "eval", cpu)
    assert np.array_equal(eval_mode[0], eval_mode[1])
    with pytest.raises(InputError, match="test_mode must be one of"):
        translate(generator, masks, [1, 2], "Train", cpu)


def test_schedule_counts_epochs_or_steps():
    assert resolve_schedule({"constant_epochs": 100, "decay_epochs": 100, "batch_size": 1}, 275).steps == 200 * 275
    epochs = resolve_schedule({"constant_epochs": 1, "decay_epochs": 1, "batch_size": 4}, 10)
    assert epochs.unit_steps == 3 and epochs.factor(2) == 1.0 and epochs.factor(3) == pytest.approx(0.5)
    assert resolve_schedule({"constant_steps": 3, "decay_steps": 5}, 275).steps == 8
    assert train_pix2pix.schedule_override(5, None) == {"constant_steps": 3, "decay_steps": 2}
    with pytest.raises(InputError, match="--epochs must be at least 2"):
        train_pix2pix.schedule_override(None, 1)


# ---------------------------------------------------------------------------------------------
# The scripts on a tiny prepared-slices folder and a fake proposed sample set


def write_slices(root: Path) -> Path:
    """Subjects 1-4, three slices each: fold 1 trains on 1-2, validates on 3; 4 is the test subject."""
    data = fold_data(12, 2)
    images, masks = data.images, data.masks
    records = []
    for i in range(12):
        subject = i // 3 + 1
        image_rel, mask_rel = f"images/s{i:02d}.png", f"masks/s{i:02d}.png"
        save_png(root / image_rel, images[i])
        save_png(root / mask_rel, masks[i])
        records.append(SliceRecord(subject, i, float(i), float(masks[i].mean()), image_rel, mask_rel,
                                   sha256_file(root / image_rel), sha256_file(root / mask_rel)))
    write_slices_manifest(root / "slices.csv", records)
    write_splits(root / "splits.json", {"test": [4], "folds": [{"fold": 1, "train": [1, 2], "val": [3]}]})
    return root


def write_proposed(root: Path, n: int) -> Path:
    """A proposed-model fold in the sample contract, ``n`` pairs (one with an empty mask)."""
    data = fold_data(n, 3)
    images, masks = data.images, data.masks
    masks[1] = 0
    samples = []
    for index in range(n):
        name = f"{index:05d}.png"
        save_png(root / "fold1" / "masks" / name, masks[index])
        save_png(root / "fold1" / "images" / name, images[index])
        samples.append(Sample(index, 1000 + index, f"masks/{name}", f"images/{name}", "ddim", 3, 3.0, int(not masks[index].any())))
    write_manifest(root / "fold1" / "manifest.csv", samples)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("p2p")
    slices, models = write_slices(root / "slices"), root / "models"
    assert train_pix2pix.main(["--slices", str(slices), "--out", str(models), "--profile", "smoke", "--steps", "4"]) == 0
    return slices, models


def test_training_script_writes_model_log_and_options(trained, capsys):
    slices, models = trained
    fold = models / "fold1"
    assert sorted(p.name for p in (fold / MODEL_DIR).iterdir()) == ["config.json", "generator.safetensors"]
    assert json.loads((fold / MODEL_DIR / "config.json").read_text()) == {"levels": 5, "ngf": 8, "in_channels": 1, "out_channels": 1}
    assert len((fold / "log.csv").read_text().splitlines()) == 1 + 4
    options = json.loads((fold / "options.json").read_text())
    assert options["steps"] == 4 and options["schedule"] == {"constant": 2, "decay": 2, "steps_per_unit": 1}
    assert train_pix2pix.main(["--slices", str(slices), "--out", str(models), "--profile", "smoke", "--steps", "4", "--resume"]) == 0
    assert "fold 1: up to date" in capsys.readouterr().out


def sample_args(slices: Path, models: Path, masks: Path, out: Path) -> list[str]:
    return ["--slices", str(slices), "--models", str(models), "--masks", str(masks), "--out", str(out), "--profile", "smoke"]


def test_sampling_follows_the_contract_on_the_proposed_masks(trained, tmp_path):
    slices, models = trained
    proposed = write_proposed(tmp_path / "proposed", 9)  # more than the 6 training images: the first 6 are used
    assert sample_pix2pix.main(sample_args(slices, models, proposed, tmp_path / "out")) == 0
    written, source = read_manifest(tmp_path / "out", 1), read_manifest(proposed, 1)[:6]
    assert [(s.index, s.seed, s.mask) for s in written] == [(s.index, s.seed, s.mask) for s in source]
    assert {(s.sampler, s.steps, s.w) for s in written} == {("pix2pix", 1, 0.0)}
    assert [s.empty for s in written] == [s.empty for s in source] == [0, 1, 0, 0, 0, 0]
    for s in written:
        mask = load_png(tmp_path / "out" / "fold1" / s.mask)
        assert np.array_equal(mask, load_png(proposed / "fold1" / s.mask)) and set(np.unique(mask)) <= {0, 1}
        image = load_png(tmp_path / "out" / "fold1" / s.image)
        assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE)
    assert json.loads((tmp_path / "out" / "fold1" / "options.json").read_text())["test_mode"] == "train"
    # seeded: a second run gives the same bytes
    assert sample_pix2pix.main(sample_args(slices, models, proposed, tmp_path / "again")) == 0
    for s in written:
        assert sha256_file(tmp_path / "out" / "fold1" / s.image) == sha256_file(tmp_path / "again" / "fold1" / s.image)


def test_sampling_names_missing_or_short_input(trained, tmp_path):
    slices, models = trained
    with pytest.raises(InputError, match=r"fold1/manifest\.csv is missing"):
        sample_pix2pix.main(sample_args(slices, models, tmp_path / "nothing", tmp_path / "out"))
    short = write_proposed(tmp_path / "short", 4)
    with pytest.raises(InputError, match=r"manifest\.csv: 4 samples, the fold needs 6"):
        sample_pix2pix.main(sample_args(slices, models, short, tmp_path / "out"))
    with pytest.raises(InputError, match=r"nomodels/fold1/model: no trained Pix2Pix model"):
        sample_pix2pix.main(sample_args(slices, tmp_path / "nomodels", short, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_stages_run_for_every_profile(tmp_path):
    for profile in ("smoke", "default", "paper"):
        ctx = Context(profile=load_profile(profile), out=tmp_path, repo=REPO, resect_root="r", seg_root="s")
        for name in ("pix2pix", "sample_pix2pix"):
            stage = next(s for s in STAGES if s.name == name)
            job = prepare_job(ctx, stage, {})
            argv = job.argv
            assert stage.per_fold and "--resume" in argv and job.settings["sections"] == {"pix2pix": load_profile(profile)["pix2pix"]}
            script = importlib.import_module(stage.script.removesuffix(".py"))
            assert script.parse_args([*argv, "--folds", "2"]).fold == [2]  # the pipeline appends --folds K
