"""Downstream nnU-Net study (Fig. 9): dataset, splits, bad input, statistics, and one brief real training.

The synthetic pairs come from the project's stand-in generator (perturbed real training pairs,
code/make_standin_samples.py) in the sample contract; the nnU-Net parts run the real nnunetv2.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from iusdiff.baselines.perturb import STANDIN_LABEL
from iusdiff.data.slices import load_dataset
from iusdiff.errors import InputError
from iusdiff.evaluation import downstream as ds
from iusdiff.io import load_png, save_png
from iusdiff.outputs.results import read_results
from iusdiff.outputs.samples import MANIFEST_FIELDS

from helpers import run_script


TEST_SUBJECTS = {24, 25, 27}
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.interface` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def slices(smoke_data) -> Path:
    """The smoke profile's prepared phantom slices (7 subjects, test subject 24)."""
    return smoke_data / "slices"


@pytest.fixture(scope="module")
def samples(slices, tmp_path_factory) -> Path:
    """The project's stand-in generator, 3 pairs per real training image (R up to 3) in all folds."""
    out = tmp_path_factory.mktemp("samples") / "samples"
    result = run_script("make_standin_samples.py", "--slices", slices, "--out", out, "--copies", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def copy_samples(samples: Path, target: Path) -> Path:
    shutil.copytree(samples, target)
    return target


def rewrite_manifest(fold_dir: Path, change) -> None:
    path = fold_dir / "manifest.csv"
    rows = change(list(csv.DictReader(open(path, newline=""))))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_generator_label_comes_from_the_samples_options(slices, samples, tmp_path):
    study = ds.load_study(load_dataset(slices), samples, [1], [0, 1])
    assert study.generator == f"synthetic pairs: {STANDIN_LABEL}"
    copied = copy_samples(samples, tmp_path / "samples")
    (copied / "options.json").unlink()  # code/sample.py records no 'generator'
    assert ds.load_study(load_dataset(slices), copied, [1], [0, 1]).generator is None


def test_entries_sizes_and_no_leakage(slices, samples):
    dataset = load_dataset(slices)
    study = ds.load_study(dataset, samples, [1, 2, 3, 4, 5], list(ds.RATIOS))
    assert [e.index for e in study.entries] == [(e.fold - 1) * 4 + e.ratio for e in study.entries] == list(range(20))
    real_ids = {p.case_id for p in study.development}
    test_ids = {p.case_id for p in study.test}
    assert {int(c[6:8]) for c in test_ids} == TEST_SUBJECTS & {24}
    for entry in study.entries:
        n_real = len(dataset.select(entry.fold, "train"))
        synthetic = [c for c in entry.train if c.startswith("syn_")]
        assert len(entry.train) == n_real * (1 + entry.ratio) and len(synthetic) == entry.ratio * n_real
        assert all(c.startswith(f"syn_f{entry.fold}_") for c in synthetic)  # that fold's pairs only
        assert set(entry.train) - set(synthetic) <= real_ids
        assert set(entry.val) <= real_ids and len(entry.val) == len(dataset.select(entry.fold, "val"))
        assert not set(entry.val) & set(entry.train)
        assert not (set(entry.train) | set(entry.val)) & test_ids
        subjects = {int(c[6:8]) for c in (*entry.train, *entry.val) if c.startswith("real_")}
        assert not subjects & TEST_SUBJECTS
    by_fold = {}
    for entry in study.entries:  # R sets are nested: R1 ⊂ R2 ⊂ R3
        by_fold.setdefault(entry.fold, []).append(set(entry.train))
    assert all(a < b for sets in by_fold.values() for a, b in zip(sets, sets[1:]))


def test_empty_rows_are_skipped(slices, samples, tmp_path):
    dataset = load_dataset(slices)
    copied = copy_samples(samples, tmp_path / "samples")

    def flag_first_two(rows):
        for row in rows[:2]:
            row["empty"] = "1"
        return rows

    rewrite_manifest(copied / "fold1", flag_first_two)
    study = ds.load_study(dataset, copied, [1], [0, 1])
    assert [p.case_id for p in study.synthetic[1][:2]] == ["syn_f1_00002", "syn_f1_00003"]


def test_missing_fold_folder_is_an_input_error(slices, samples, tmp_path):
    copied = copy_samples(samples, tmp_path / "samples")
    shutil.rmtree(copied / "fold3")
    with pytest.raises(InputError, match=r"fold 3: generated samples not found \(.*fold3/manifest.csv is missing\)"):
        ds.load_study(load_dataset(slices), copied, [1, 2, 3], [0, 1])


def test_too_few_pairs_names_fold_and_shortfall(slices, samples, tmp_path):
    dataset = load_dataset(slices)
    copied = copy_samples(samples, tmp_path / "samples")
    n_real = len(dataset.select(4, "train"))
    rewrite_manifest(copied / "fold4", lambda rows: rows[: 3 * n_real - 5])
    with pytest.raises(InputError, match=rf"fold 4 has {3 * n_real - 5} non-empty synthetic pairs, the study needs {3 * n_real}.*short by 5"):
        ds.load_study(dataset, copied, [4], list(ds.RATIOS))


def test_mask_stored_as_0_255_is_an_input_error(slices, samples, tmp_path):
    copied = copy_samples(samples, tmp_path / "samples")
    mask_path = copied / "fold1" / "masks" / "00000.png"
    save_png(mask_path, load_png(mask_path) * 255)
    study = ds.load_study(load_dataset(slices), copied, [1], [0, 1])
    with pytest.raises(InputError, match=r"00000.png: mask values must be \{0,1\}, found \[0, 255\]"):
        ds.write_raw_dataset(study, tmp_path / "raw")


def test_script_reports_bad_input_in_one_line(slices, tmp_path):
    result = run_script("downstream_nnunet.py", "--slices", slices, "--samples", tmp_path / "none", "--out", tmp_path / "o", "--profile", "smoke")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "fold 1: generated samples not found" in result.stderr


# ---------------------------------------------------------------------------------------------
# One brief real nnU-Net run: fold 1, R ∈ {0, 1}, the smoke trainer


@pytest.fixture(scope="module")
def study(smoke_run) -> tuple[Path, str]:
    """The smoke run's downstream study (fold 1, R = 0-3, the two-step generator's pairs), and
    what its script printed when run again with the runner's arguments: nothing is retrained."""
    argv = json.loads((smoke_run / ".stages" / "downstream.json").read_text())["argv"]
    again = run_script("downstream_nnunet.py", *argv, cwd=smoke_run)
    assert again.returncode == 0, again.stdout + again.stderr
    return smoke_run, again.stdout


def test_raw_dataset_passed_nnunets_integrity_check(study):
    root, _ = study
    slices = root / "slices"
    work = ds.Workspace(root / "downstream")
    assert "verify_dataset_integrity Done" in (work.logs / "verify_dataset_integrity.txt").read_text()
    meta = json.loads((work.raw / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "tumour": 1} and meta["file_ending"] == ".png"
    assert meta["numTraining"] == len(list((work.raw / "imagesTr").glob("*_0000.png")))
    n_test = len(load_dataset(slices).select(1, "test"))
    assert len(list((work.raw / "imagesTs").glob("real_s24_*_0000.png"))) == n_test
    for label in list((work.raw / "labelsTr").glob("*.png"))[:20]:
        assert set(np.unique(load_png(label))) <= {0, 1}


def test_integrity_check_failure_is_an_input_error(study, tmp_path):
    root, _ = study
    work = ds.Workspace(tmp_path / "copy")
    shutil.copytree(ds.Workspace(root / "downstream").raw, work.raw)
    label = next((work.raw / "labelsTr").glob("syn_*.png"))
    save_png(label, load_png(label) * 255)
    with pytest.raises(InputError, match=r"integrity check failed: Error: Unexpected labels found in file .*syn_"):
        ds.verify_raw_dataset(work, workers=1)


def test_smoke_run_trains_predicts_and_reports(study):
    root, rerun_stdout = study
    out, ratios = root / "downstream", (0, 1, 2, 3)
    splits = json.loads((out / "nnunet" / "nnUNet_preprocessed" / ds.DATASET_NAME / "splits_final.json").read_text())
    assert len(splits) == len(ratios) and not any(c.startswith("syn_") for s in splits for c in s["val"])
    n_train = len(splits[0]["train"])
    assert all(sum(not c.startswith("syn_") for c in s["train"]) == n_train for s in splits)  # the same real images at every R
    assert (out / "entries.csv").read_text().splitlines()[1:] == [f"{r},1,{r},{n_train},{r * n_train},{len(splits[0]['val'])}" for r in ratios]
    results = out / "nnunet" / "nnUNet_results" / ds.DATASET_NAME / "nnUNetTrainer_iusdiffSmoke__nnUNetPlans__2d"
    assert all((results / f"fold_{r}" / "checkpoint_final.pth").is_file() for r in ratios)
    assert all((out / "models" / f"fold1_R{r}" / "model.safetensors").is_file() for r in ratios)
    n_test = len(load_dataset(root / "slices").select(1, "test"))
    rows = ds.read_per_image(out / "per_image.csv")
    assert len(rows) == len(ratios) * n_test and {(r["fold"], r["R"]) for r in rows} == {(1, r) for r in ratios}
    assert all(0.0 <= r["dice"] <= 1.0 and (r["hd95"] >= 0 or math.isinf(r["hd95"])) for r in rows)
    for entry in (f"fold1_R{r}" for r in ratios):
        predictions = sorted((out / "predictions" / entry).glob("*.png"))
        assert len(predictions) == n_test and set(np.unique(load_png(predictions[0]))) <= {0, 1}
    for path in ("figures/fig9.png", "figures/fig9.pdf", "tables/fig9.csv", "tables/fig9.tex"):
        assert (root / path).is_file(), path
    table = (root / "tables" / "fig9.md").read_text()
    assert "synthetic phantom data" in table and "0.679" in table
    numbers = {n.key: n for n in read_results(root / "results")}
    assert {"R0 · DSC · mean", "R3 · HD · mean", "Wilcoxon R0 vs R1 · HD · p", "Friedman · DSC · chi2"} <= set(numbers)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ratios"] == list(ratios) and "3" in summary["metrics"]["hd95"]["wilcoxon_R0_vs"]
    assert rerun_stdout.count("already trained, predictions up to date") == len(ratios)  # rerun: finished entries skipped


def test_exported_model_gives_the_stock_predictors_logits_loading_weights_once(study, monkeypatch):
    """The predictor built from models/fold1_R1 (safetensors, no pickle) against nnU-Net's stock
    predictor on the checkpoint of the same training (nnU-Net fold 1)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from iusdiff.evaluation.nnunet_model import model_predictor

    root, _ = study
    work = ds.Workspace(root / "downstream")
    monkeypatch.setenv("nnUNet_extTrainer", str(ds.TRAINERS_DIR))
    results = work.results("nnUNetTrainer_iusdiffSmoke")
    stock = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True, perform_everything_on_device=False,
                            device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    stock.initialize_from_trained_model_folder(str(results), (1,), "checkpoint_final.pth")
    ours = model_predictor(work.model("fold1_R1"), "cpu")
    loads = []
    monkeypatch.setattr(ours.network, "load_state_dict", lambda *a, **k: loads.append(1))
    # One thread, as the pipeline predicts (ds.limit_cpu_threads): the stock predictor caps its
    # threads at nnU-Net's default process count, which an earlier test may have fixed at 1.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for image in sorted((work.raw / "imagesTs").glob("*.png"))[:3]:
            data = torch.from_numpy(load_png(image).astype(np.float32)[None, None] / 255.0)
            assert torch.equal(ours.predict_logits_from_preprocessed_data(data), stock.predict_logits_from_preprocessed_data(data))
    finally:
        torch.set_num_threads(threads)
    assert not loads


def test_cpu_training_is_repeatable(study, tmp_path, monkeypatch):
    """Same entry, same seed, fresh results folder: identical weights (in-process data augmentation)."""
    import torch

    from iusdiff.evaluation.nnunet_model import read_checkpoint

    root, _ = study
    source = ds.Workspace(root / "downstream")
    work = ds.Workspace(tmp_path / "again")
    shutil.copytree(source.nnunet / "nnUNet_preprocessed", work.nnunet / "nnUNet_preprocessed")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_def_n_proc", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(name, "")  # restored after the test
    ds.set_nnunet_environment(work, workers=1)
    ds.limit_cpu_threads("cpu", 1)
    splits = json.loads((work.preprocessed / "splits_final.json").read_text())
    entry = ds.Entry(0, 1, 0, tuple(splits[0]["train"]), tuple(splits[0]["val"]))
    trainer = "nnUNetTrainer_iusdiffSmoke"
    ds.train_entry(entry, work, trainer, "cpu", seed=0, preprocess_key="k")
    ours = read_checkpoint(work.results(trainer) / "fold_0" / "checkpoint_final.pth")
    theirs = read_checkpoint(source.results(trainer) / "fold_0" / "checkpoint_final.pth")
    assert ours["network_weights"].keys() == theirs["network_weights"].keys()
    assert all(torch.equal(ours["network_weights"][k], theirs["network_weights"][k]) for k in ours["network_weights"])
    for name in ("model.safetensors", "plans.json", "dataset.json"):  # and the same exported bytes
        assert (work.model(entry.name) / name).read_bytes() == (source.model(entry.name) / name).read_bytes(), name


# ---------------------------------------------------------------------------------------------
# Statistics and outputs on made-up per-image values


def made_up_rows(n_images: int = 12, folds=(1, 2), seed: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for fold in folds:
        for ratio in ds.RATIOS:
            for i in range(n_images):
                rows.append({"fold": fold, "R": ratio, "case": f"real_s24_k{i:04d}",
                             "dice": float(np.clip(0.6 + 0.03 * ratio + rng.normal(0, 0.05), 0, 1)),
                             "hd95": float(30 - 2 * ratio + rng.normal(0, 2))})
    return rows


def test_per_image_values_average_the_folds_and_tests_pair_images():
    rows = made_up_rows()
    values = ds.per_image_values(rows, "dice")
    first = [r["dice"] for r in rows if r["R"] == 2 and r["case"] == "real_s24_k0000"]
    assert values[2][0] == pytest.approx(np.mean(first))
    st = ds.metric_stats(rows, "dice")
    assert st.summaries[1]["n"] == 24 and set(st.wilcoxon) == {1, 2, 3}
    chi2, p = st.friedman
    assert chi2 > 0 and 0 <= p <= 1


def test_empty_predictions_rank_worst_and_are_counted():
    rows = made_up_rows()
    for row in rows:
        if row["R"] == 0 and row["case"] in ("real_s24_k0000", "real_s24_k0001"):
            row["hd95"] = math.inf
    st = ds.metric_stats(rows, "hd95")
    assert st.summaries[0]["n_inf"] == 4 and math.isfinite(st.summaries[0]["mean"])
    ranked = ds.rank_ready(st.values)
    finite = np.concatenate([v[np.isfinite(v)] for v in st.values.values()])
    assert ranked[0][0] - finite.min() > 2 * np.ptp(finite)  # beyond every finite difference


def test_figure_and_table_carry_labels_and_paper_values(tmp_path):
    rows = made_up_rows()
    stats = {m: ds.metric_stats(rows, m) for m in ds.METRICS}
    labels = ["profile 'smoke': synthetic phantom data", f"synthetic pairs: {STANDIN_LABEL}"]
    table = ds.fig9_table(stats, labels)
    assert [row[0] for row in table.rows] == ["0", "1", "2", "3", "Friedman"]
    assert table.rows[0][2] == "0.679" and table.rows[3][2] == "—" and table.rows[3][4] == "32.62"
    assert table.rows[4][2] == "χ² 7.20, p = 0.06" and table.rows[4][4] == "χ² 11.50, p <0.01"
    assert table.rows[1][7] == "HD p <0.05" and labels[1] in table.notes
    fig = ds.fig9(stats, labels)
    assert "Friedman" in fig.axes[0].get_title() and STANDIN_LABEL in fig._suptitle.get_text()
