"""Exported nnU-Net models (iusdiff.evaluation.nnunet_model) and the downstream study's content
checks, on one tiny real nnU-Net training: blob slices (32 px), fold 1, R = 0, the smoke trainer,
made by downstream.py's own steps (plan, preprocess, train, export, predict)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from iusdiff.data.slices import load_dataset
from iusdiff.errors import InputError
from iusdiff.evaluation import downstream as ds
from iusdiff.evaluation import nnunet_model as nm
from iusdiff.evaluation.fidelity import NnUNetSegmenter
from iusdiff.io import load_png, save_png

from helpers import blob_slices

TRAINER = "nnUNetTrainer_iusdiffSmoke"
NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_def_n_proc", "nnUNet_n_proc_DA")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.interface` is deprecated:FutureWarning")


@dataclass(frozen=True)
class Tiny:
    """The trained entry and where its files are."""

    study: ds.Study
    work: ds.Workspace
    entry: ds.Entry
    preprocess_key: str
    key: str

    @property
    def model(self) -> Path:
        return self.work.model(self.entry.name)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_nnunet")
    study = ds.load_study(load_dataset(blob_slices(root / "slices")), root / "no_samples", [1], [0])
    work, threads = ds.Workspace(root / "downstream"), torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        for name in NNUNET_VARIABLES:
            patch.setenv(name, "")  # restored after the module
        ds.set_nnunet_environment(work, workers=1)
        ds.limit_cpu_threads("cpu", 1)
        ds.build_raw_dataset(study, work)
        ds.nnunet_plan_and_preprocess(work, workers=1)
        preprocess_key = "tiny"  # what downstream.plan_and_preprocess would key the entries on
        ds.write_splits(study, work)
        entry = study.entries[0]
        key, trained = ds.train_entry(entry, work, TRAINER, "cpu", seed=0, preprocess_key=preprocess_key)
        assert trained and ds.predict_entry(entry, study, work, "cpu", key)
        yield Tiny(study, work, entry, preprocess_key, key)
    torch.set_num_threads(threads)


def copied(model: Path, target: Path) -> Path:
    """A copy of an export, away from nnU-Net's folders and its checkpoint."""
    shutil.copytree(model, target)
    return target


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_export_predicts_nnunets_stock_logits_without_the_checkpoint(tiny, tmp_path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    model = copied(tiny.model, tmp_path / "model")
    assert sorted(p.name for p in model.iterdir()) == ["dataset.json", "model.json", "model.safetensors", "plans.json"]
    stock = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True, perform_everything_on_device=False,
                            device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    stock.initialize_from_trained_model_folder(str(tiny.work.results(TRAINER)), (tiny.entry.index,), nm.CHECKPOINT)
    ours = nm.model_predictor(model, "cpu")
    for image in sorted((tiny.work.raw / "imagesTs").glob("*.png")):
        data = torch.from_numpy(load_png(image).astype(np.float32)[None, None] / 255.0)
        logits = ours.predict_logits_from_preprocessed_data(data)
        assert torch.equal(logits, stock.predict_logits_from_preprocessed_data(data))  # the same bits
    assert logits.argmax(0).any()  # a trained model, not a constant one


def test_export_gives_the_same_bytes_again(tiny, tmp_path):
    folder = tiny.work.results(TRAINER) / f"fold_{tiny.entry.index}"
    nm.export_model(folder, tmp_path / "again", tiny.key, {"entry": tiny.entry.name, "fold": 1, "R": 0})
    for path in tiny.model.iterdir():
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), path.name


def test_a_changed_byte_in_the_weights_is_refused_in_one_line(tiny, tmp_path):
    model = copied(tiny.model, tmp_path / "model")
    assert nm.is_current(model, tiny.key)
    flip_last_byte(model / nm.MODEL_FILE)
    assert not nm.is_current(model, tiny.key)
    for load in (lambda: nm.model_predictor(model, "cpu"), lambda: NnUNetSegmenter(model)):  # downstream, evaluate_images
        with pytest.raises(InputError) as error:
            load()
        message = str(error.value)
        assert message.startswith(f"{model / nm.MODEL_FILE}: missing or changed since it was exported") and "\n" not in message


def test_a_checkpoint_holding_other_objects_is_not_unpickled(tmp_path):
    torch.save({"network_weights": {}, "trainer_name": Path("anything")}, tmp_path / nm.CHECKPOINT)
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / nm.CHECKPOINT))}: not a plain nnU-Net checkpoint: .*PosixPath"):
        nm.export_model(tmp_path, tmp_path / "export", "key", {})
    assert not (tmp_path / "export").exists()


def test_a_changed_prediction_is_made_again(tiny, tmp_path):
    work = ds.Workspace(tmp_path / "downstream")
    shutil.copytree(tiny.work.root / "predictions", work.root / "predictions")
    shutil.copytree(tiny.model, work.model(tiny.entry.name))
    shutil.copytree(tiny.work.raw / "imagesTs", work.raw / "imagesTs")
    target = work.predictions(tiny.entry)
    assert not ds.predict_entry(tiny.entry, tiny.study, work, "cpu", tiny.key)  # as written: kept
    png = max(target.glob("*.png"), key=lambda p: load_png(p).sum())
    original = png.read_bytes()
    assert load_png(png).any()
    save_png(png, np.zeros_like(load_png(png)))
    assert ds.predict_entry(tiny.entry, tiny.study, work, "cpu", tiny.key)
    assert png.read_bytes() == original
    png.unlink()
    assert ds.predict_entry(tiny.entry, tiny.study, work, "cpu", tiny.key) and png.read_bytes() == original
    assert not ds.predict_entry(tiny.entry, tiny.study, work, "cpu", tiny.key)


def test_training_is_skipped_only_for_an_unchanged_export(tiny, tmp_path, monkeypatch):
    work = ds.Workspace(tmp_path / "downstream")
    shutil.copytree(tiny.work.root, work.root, ignore=shutil.ignore_patterns("predictions", "logs"))
    for name in NNUNET_VARIABLES:
        monkeypatch.setenv(name, "")  # restored after the test
    ds.set_nnunet_environment(work, workers=1)
    weights = work.model(tiny.entry.name) / nm.MODEL_FILE
    original = weights.read_bytes()
    assert ds.train_entry(tiny.entry, work, TRAINER, "cpu", 0, tiny.preprocess_key) == (tiny.key, False)
    flip_last_byte(weights)
    assert ds.train_entry(tiny.entry, work, TRAINER, "cpu", 0, tiny.preprocess_key) == (tiny.key, True)
    assert weights.read_bytes() == original  # trained again from the same seed


def test_an_interrupted_training_resumes_only_from_a_checkpoint_with_its_recorded_digest(tiny, tmp_path):
    """nnU-Net resumes by unpickling its checkpoint: our trainers record its sha256 beside it, and
    a changed or unrecorded checkpoint is trained again instead of loaded."""
    folder = shutil.copytree(tiny.work.results(TRAINER) / f"fold_{tiny.entry.index}", tmp_path / "fold")
    checkpoint = folder / "checkpoint_final.pth"
    assert (folder / "checkpoint_final.pth.sha256").is_file() and ds.resumable(folder)
    flip_last_byte(checkpoint)
    assert not ds.resumable(folder)
    flip_last_byte(checkpoint)
    (folder / "checkpoint_final.pth.sha256").unlink()
    assert not ds.resumable(folder)
