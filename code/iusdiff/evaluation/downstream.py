"""Downstream augmentation study (paper §3.5, Fig. 9): nnU-Net v2 ``2d`` trained per fold on the real
training images plus R·N_real synthetic pairs of that fold, R ∈ {0, 1, 2, 3}, tested on subjects
24, 25 and 27.

One nnU-Net raw dataset holds every real development image, the synthetic pairs of every fold
and (in ``imagesTs``/``labelsTs``) the test images; it is planned and preprocessed once, and
``splits_final.json`` holds one entry per (fold, R). With all five folds and all four ratios the
nnU-Net fold number of (fold, R) is ``(fold − 1)·4 + R``; with a subset the entries keep
(fold, R) order and ``entries.csv`` records the mapping.

Synthetic pairs follow the sample contract (:mod:`iusdiff.outputs.samples`; ``code/sample.py`` writes it,
and so does the stand-in ``code/make_standin_samples.py``), with {0,1} masks and uint8 grayscale
images. A fold needs max(R)·N_real non-empty pairs. Entry R uses the first R·N_real of them by
index, skipping rows flagged ``empty`` (an empty mask teaches nothing about tumours), so the R
sets are nested.

nnU-Net's folders are set inside the output folder, never in the user's home. Every step records
a digest of its inputs, so a rerun skips finished work and redoes whatever its inputs changed.
Each trained entry is exported to ``models/<entry>/`` (safetensors weights, plans, a record of
their sha256; :mod:`iusdiff.evaluation.nnunet_model`), and prediction loads that export, never
nnU-Net's pickled checkpoint. Whether finished work is kept is decided by content: an entry is
retrained unless its export matches its record, and predictions are made again unless every PNG
matches the sha256 recorded when it was written.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.metadata
import json
import math
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import matplotlib
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iusdiff.data.slices import SliceDataset, SliceRecord
from iusdiff.cli import recompute_requested
from iusdiff.errors import InputError
from iusdiff.evaluation.metrics import dice, hd95, summarise
from iusdiff.evaluation.nnunet_model import (
    MODEL_FILE,
    export_model,
    is_current,
    model_predictor,
    verified_record,
)
from iusdiff.evaluation.stats import friedman_test, pairwise_wilcoxon, rank_ready, stars
from iusdiff.io import (
    atomic_dir,
    atomic_path,
    changed_files,
    file_digests,
    load_mask_png,
    load_png,
    read_record,
    save_png,
    sha256_file,
    write_json,
    write_text,
)
from iusdiff.outputs.layout import fold_dir, fold_name
from iusdiff.outputs.nnunet import FILE_ENDING, dataset_json, image_file, write_case
from iusdiff.outputs.plotting import STYLE, TEXT_WIDTH_IN, label_text
from iusdiff.outputs.results import Number
from iusdiff.outputs.samples import read_manifest
from iusdiff.outputs.tables import Table

RATIOS = (0, 1, 2, 3)
DATASET_ID = 901
DATASET_NAME = f"Dataset{DATASET_ID:03d}_IUS"
CONFIGURATION = "2d"
PLANS = "nnUNetPlans"
TRAINERS_DIR = Path(__file__).resolve().parent / "nnunet_trainers"
METRICS = ("dice", "hd95")


def entry_name(fold: int, ratio: int) -> str:
    """The name of the (fold, R) entry's folders: ``fold1_R0``."""
    return f"{fold_name(fold)}_R{ratio}"


def real_case_id(record: SliceRecord) -> str:
    return f"real_s{record.subject:02d}_k{record.slice_index:04d}"


def synthetic_case_id(fold: int, index: int) -> str:
    return f"syn_f{fold}_{index:05d}"


# ---------------------------------------------------------------------------------------------
# Synthetic pairs (the generator's output contract)


@dataclass(frozen=True)
class Pair:
    """One image–mask pair as a source for the nnU-Net dataset."""

    case_id: str
    image: Path
    mask: Path


def select_pairs(samples: Path, fold: int, r_max: int, n_real: int) -> list[Pair]:
    """The first ``r_max·n_real`` non-empty pairs of a fold by index; a shortfall is an InputError."""
    needed = r_max * n_real
    try:
        chosen = [s for s in read_manifest(samples, fold) if not s.empty]
    except ValueError as exc:
        raise InputError(f"{fold_dir(samples, fold) / 'manifest.csv'}: malformed row ({exc})") from None
    if len(chosen) < needed:
        raise InputError(
            f"{fold_dir(samples, fold) / 'manifest.csv'}: fold {fold} has {len(chosen)} non-empty synthetic pairs, the "
            f"study needs {needed} (R up to {r_max} × {n_real} real training images); short by {needed - len(chosen)}. "
            "Generate more pairs for this fold."
        )
    return [
        Pair(synthetic_case_id(fold, s.index), fold_dir(samples, fold) / s.image, fold_dir(samples, fold) / s.mask)
        for s in chosen[:needed]
    ]


def generator_label(samples: Path) -> str | None:
    """What made the pairs, when their writer recorded it (the stand-in generator does, in
    ``options.json``); every output then carries it."""
    options = samples / "options.json"
    if not options.is_file():
        return None
    generator = json.loads(options.read_text()).get("generator")
    return f"synthetic pairs: {generator}" if generator else None


# ---------------------------------------------------------------------------------------------
# The study's inputs


@dataclass(frozen=True)
class Entry:
    """One nnU-Net training: fold K of Table 1 with R·N_real synthetic pairs of that fold."""

    index: int
    fold: int
    ratio: int
    train: tuple[str, ...]
    val: tuple[str, ...]

    @property
    def name(self) -> str:
        return entry_name(self.fold, self.ratio)


@dataclass(frozen=True)
class Study:
    """Every case of the nnU-Net dataset and the (fold, R) entries trained on it."""

    development: tuple[Pair, ...]
    test: tuple[Pair, ...]
    synthetic: dict[int, tuple[Pair, ...]]
    entries: tuple[Entry, ...]
    generator: str | None


def _real_pairs(dataset: SliceDataset, records: Sequence[SliceRecord]) -> list[Pair]:
    return [Pair(real_case_id(r), dataset.root / r.image, dataset.root / r.mask) for r in records]


def load_study(dataset: SliceDataset, samples: Path, folds: Sequence[int], ratios: Sequence[int]) -> Study:
    """Assemble and check the study's cases before any work; errors name the fold or file."""
    known = {entry["fold"] for entry in dataset.splits["folds"]}
    if unknown := sorted(set(folds) - known):
        raise InputError(f"{dataset.root / 'splits.json'}: no fold(s) {unknown}; it has {sorted(known)}")
    if bad := sorted(set(ratios) - set(RATIOS)):
        raise InputError(f"ratios must be among {RATIOS}, got {bad}")
    test_subjects = set(dataset.subjects(folds[0], "test"))
    development_subjects = {s for f in known for part in ("train", "val") for s in dataset.subjects(f, part)}
    if overlap := sorted(test_subjects & development_subjects):
        raise InputError(f"{dataset.root / 'splits.json'}: test subject(s) {overlap} also in a fold")
    test = _real_pairs(dataset, dataset.select(folds[0], "test"))
    if not test:
        raise InputError(f"{dataset.root}: no test images (subjects {sorted(test_subjects)})")
    development = _real_pairs(dataset, [r for r in dataset.records if r.subject in development_subjects])
    r_max = max(ratios)
    synthetic, entries = {}, []
    for fold in folds:
        train = [p.case_id for p in _real_pairs(dataset, dataset.select(fold, "train"))]
        val = tuple(p.case_id for p in _real_pairs(dataset, dataset.select(fold, "val")))
        synthetic[fold] = tuple(select_pairs(samples, fold, r_max, len(train))) if r_max else ()
        for ratio in ratios:
            extra = [p.case_id for p in synthetic[fold][: ratio * len(train)]]
            entries.append(Entry(len(entries), fold, ratio, tuple(train + extra), val))
    return Study(tuple(development), tuple(test), synthetic, tuple(entries), generator_label(samples) if r_max else None)


# ---------------------------------------------------------------------------------------------
# nnU-Net raw dataset


def _checked_pair(pair: Pair, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image and {0,1} mask of a pair, both 2-D uint8 of the same (expected) shape."""
    image, mask = load_png(pair.image), load_png(pair.mask)
    values = np.unique(mask)
    if not np.isin(values, (0, 1)).all():
        raise InputError(f"{pair.mask}: mask values must be {{0,1}}, found {values[:8].tolist()}")
    if image.shape != mask.shape:
        raise InputError(f"{pair.image}: image {image.shape} and mask {mask.shape} differ in shape")
    if image.shape != shape:
        raise InputError(f"{pair.image}: shape {image.shape} differs from the real slices' {shape}")
    return image, mask


def write_raw_dataset(study: Study, target: Path) -> None:
    """Write ``imagesTr``/``labelsTr`` (real development + synthetic), ``imagesTs``/``labelsTs`` (test)
    and ``dataset.json`` into ``target`` (a fresh folder)."""
    shape = load_png(study.test[0].image).shape
    for part, pairs in (("Tr", study.development), ("Ts", study.test)):
        for pair in pairs:
            image = load_png(pair.image)
            if image.shape != shape:
                raise InputError(f"{pair.image}: shape {image.shape} differs from the other slices' {shape}")
            write_case(target, pair.case_id, image, load_mask_png(pair.mask), part)
    synthetic = [pair for pairs in study.synthetic.values() for pair in pairs]
    for pair in synthetic:
        image, mask = _checked_pair(pair, shape)
        if not mask.any():
            raise InputError(f"{pair.mask}: empty mask not flagged 'empty' in its manifest")
        write_case(target, pair.case_id, image, mask)
    description = "iusdiff downstream study: real development slices + synthetic pairs of every fold"
    write_json(target / "dataset.json", dataset_json(len(study.development) + len(synthetic), DATASET_NAME, description))


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and content below ``root``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# nnU-Net environment, steps and their records


@dataclass(frozen=True)
class Workspace:
    """The folders of one study; nnU-Net's three folders live under ``root/nnunet``."""

    root: Path

    @property
    def nnunet(self) -> Path:
        return self.root / "nnunet"

    @property
    def raw(self) -> Path:
        return self.nnunet / "nnUNet_raw" / DATASET_NAME

    @property
    def preprocessed(self) -> Path:
        return self.nnunet / "nnUNet_preprocessed" / DATASET_NAME

    def results(self, trainer: str) -> Path:
        return self.nnunet / "nnUNet_results" / DATASET_NAME / f"{trainer}__{PLANS}__{CONFIGURATION}"

    @property
    def state(self) -> Path:
        return self.nnunet / "state"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def predictions(self, entry: Entry) -> Path:
        return self.root / "predictions" / entry.name

    def model(self, name: str) -> Path:
        """The exported model of the entry ``name`` (checksummed with the stage's outputs)."""
        return self.root / "models" / name


def set_nnunet_environment(work: Workspace, workers: int) -> None:
    """Point nnU-Net at the output folder and at our trainers, before nnU-Net reads them."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = work.nnunet / name
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(folder.resolve())
    os.environ["nnUNet_extTrainer"] = str(TRAINERS_DIR)
    os.environ["nnUNet_def_n_proc"] = str(workers)
    os.environ["nnUNet_n_proc_DA"] = str(workers)


def limit_cpu_threads(device: str, threads: int) -> None:
    """Fix torch's CPU threads for training and inference.

    One thread by default: reductions then run in a fixed order (repeatable weights), and on a
    shared small machine nothing spins waiting for cores (with two busy-waiting OpenMP threads
    on two shared cores, inference was ten times slower than with one here).
    """
    import torch

    if device == "cpu":
        torch.set_num_threads(threads)


@contextlib.contextmanager
def augmentation_in_process(device: str) -> Iterator[None]:
    """On CPU, run nnU-Net's data augmentation in this process (``nnUNet_n_proc_DA=0``).

    Its batches then come from the seeded numpy/torch generators of this process instead of
    worker processes seeded from the clock, which makes CPU training repeatable. (The planner
    reads the same variable as a thread count, so it is set only around training.)
    """
    saved = os.environ.get("nnUNet_n_proc_DA")
    if device == "cpu":
        os.environ["nnUNet_n_proc_DA"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("nnUNet_n_proc_DA", None)
        else:
            os.environ["nnUNet_n_proc_DA"] = saved


@contextlib.contextmanager
def captured_output(log: Path) -> Iterator[None]:
    """Send this process's and its children's stdout/stderr to ``log`` (nnU-Net prints a lot)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def key_of(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def build_raw_dataset(study: Study, work: Workspace) -> str:
    """Write the raw dataset; keep the existing one (and its preprocessing) when identical.

    Returns the digest of its files, the key of everything downstream of it.
    """
    work.nnunet.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".raw-", dir=work.nnunet))
    try:
        write_raw_dataset(study, fresh)
        digest = tree_digest(fresh)
        record = read_record(work.state / "raw.json")
        if record is None or record.get("digest") != digest or not work.raw.is_dir():
            if work.raw.exists():
                shutil.rmtree(work.raw)
            work.raw.parent.mkdir(parents=True, exist_ok=True)
            os.replace(fresh, work.raw)
            write_json(work.state / "raw.json", {"digest": digest, "dataset": DATASET_NAME})
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return digest


def _first_error_line(log: Path) -> str:
    for line in log.read_text(errors="replace").splitlines():
        if "error" in line.lower():
            return line.strip()
    return ""


def verify_raw_dataset(work: Workspace, workers: int) -> None:
    """nnU-Net's own integrity check (what ``--verify_dataset_integrity`` runs), as an InputError."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    log = work.logs / "verify_dataset_integrity.txt"
    try:
        with captured_output(log):
            verify_dataset_integrity(str(work.raw), workers)
    except (AssertionError, RuntimeError) as exc:
        detail = _first_error_line(log) or str(exc).splitlines()[0]
        raise InputError(f"{work.raw}: nnU-Net's dataset integrity check failed: {detail} (full output: {log})") from None


def nnunet_plan_and_preprocess(work: Workspace, workers: int) -> None:
    """nnU-Net's fingerprint, plans and ``2d`` preprocessing of the raw dataset, without its
    integrity check (the tests' tiny dataset skips it: each step spawns worker processes)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    with captured_output(work.logs / "plan_and_preprocess.txt"):
        extract_fingerprints([DATASET_ID], num_processes=workers, check_dataset_integrity=False, clean=True, verbose=False)
        plan_experiments([DATASET_ID])
        preprocess([DATASET_ID], PLANS, (CONFIGURATION,), (workers,), verbose=False)


def plan_and_preprocess(work: Workspace, raw_digest: str, workers: int) -> str:
    """Integrity check, fingerprint, plans and ``2d`` preprocessing, once per raw dataset."""
    key = key_of({"raw": raw_digest, "nnunetv2": importlib.metadata.version("nnunetv2"), "configuration": CONFIGURATION})
    record = read_record(work.state / "preprocess.json")
    if record is not None and record.get("key") == key and (work.preprocessed / f"{PLANS}.json").is_file():
        return key
    if work.preprocessed.exists():
        shutil.rmtree(work.preprocessed)
    verify_raw_dataset(work, workers)
    nnunet_plan_and_preprocess(work, workers)
    write_json(work.state / "preprocess.json", {"key": key})
    return key


def splits_final(entries: Sequence[Entry]) -> list[dict[str, list[str]]]:
    return [{"train": list(e.train), "val": list(e.val)} for e in entries]


def write_splits(study: Study, work: Workspace) -> None:
    """``splits_final.json`` (nnU-Net reads it at every training) and ``entries.csv`` (the mapping)."""
    write_json(work.preprocessed / "splits_final.json", splits_final(study.entries))
    synthetic = {p.case_id for pairs in study.synthetic.values() for p in pairs}
    lines = ["nnunet_fold,fold,R,n_train_real,n_train_synthetic,n_val\n"]
    for e in study.entries:
        n_syn = sum(case in synthetic for case in e.train)
        lines.append(f"{e.index},{e.fold},{e.ratio},{len(e.train) - n_syn},{n_syn},{len(e.val)}\n")
    write_text(work.root / "entries.csv", "".join(lines))


# ---------------------------------------------------------------------------------------------
# Training and prediction


def seed_everything(seed: int) -> None:
    """Seed every generator nnU-Net draws from in this process (batches, augmentation, init)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def entry_seed(seed: int, entry: Entry) -> int:
    return int(np.random.SeedSequence([seed, entry.fold, entry.ratio]).generate_state(1)[0])


def trainers_digest() -> str:
    """sha256 of our trainer classes' source, so editing a trainer retrains its entries."""
    from iusdiff.evaluation.nnunet_trainers import iusdiff_short

    return sha256_file(iusdiff_short.__file__)


def resumable(folder: Path) -> bool:
    """Whether the checkpoint nnU-Net would resume from in ``folder`` (final, else latest; it
    unpickles it) still has the sha256 our trainers recorded beside it when they wrote it."""
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth"):
        path = folder / name
        if path.is_file():
            recorded = path.with_name(f"{name}.sha256")
            return recorded.is_file() and recorded.read_text().strip() == sha256_file(path)
    return False


def train_entry(
    entry: Entry, work: Workspace, trainer: str, device: str, seed: int, preprocess_key: str
) -> tuple[str, bool]:
    """Train one entry with nnU-Net's ``run_training`` and export its model; return its key and
    whether it ran.

    Skipped only when the entry's export is that of the same inputs with every file as exported.
    An interrupted training continues from nnU-Net's latest checkpoint (``--c``) if that still has
    the sha256 recorded when it was written (nnU-Net unpickles it); any other folder (other
    inputs, a changed checkpoint, or a finished training whose export is missing or changed) is
    removed and the entry trained again, seeded as before (on a CPU that gives the same weights).
    """
    import torch
    from nnunetv2.run.run_training import run_training

    folder = work.results(trainer) / f"fold_{entry.index}"
    key = key_of({"preprocess": preprocess_key, "trainer": trainer, "trainers_source": trainers_digest(), "seed": seed,
                  "train": entry.train, "val": entry.val})
    if is_current(work.model(entry.name), key):
        return key, False
    record = read_record(folder / "iusdiff_entry.json")
    interrupted = record is not None and record.get("key") == key and not record.get("finished")
    if interrupted and not resumable(folder):
        print(f"downstream: {entry.name}: nnU-Net's checkpoint in {folder} no longer matches its recorded sha256; training again")
        interrupted = False
    if not interrupted:
        shutil.rmtree(folder, ignore_errors=True)
    started = {"key": key, "fold": entry.fold, "R": entry.ratio, "trainer": trainer, "seed": seed, "device": device}
    write_json(folder / "iusdiff_entry.json", {**started, "finished": False})
    seed_everything(entry_seed(seed, entry))
    with captured_output(work.logs / f"train_{entry.name}.txt"), augmentation_in_process(device):
        run_training(
            DATASET_NAME, CONFIGURATION, entry.index, trainer_class_name=trainer, plans_identifier=PLANS,
            continue_training=interrupted, device=torch.device(device),
        )
        export_model(folder, work.model(entry.name), key, {"entry": entry.name, "fold": entry.fold, "R": entry.ratio})
    write_json(folder / "iusdiff_entry.json", {**started, "finished": True})
    return key, True


def predictions_current(target: Path, made_by: dict, names: Sequence[str]) -> bool:
    """Whether ``target`` holds the predictions ``names`` of the model ``made_by`` describes, each
    PNG with the sha256 recorded when it was written (never when the runner asked for recomputation)."""
    record = read_record(target / "prediction.json")
    if recompute_requested() or record is None or any(record.get(field) != value for field, value in made_by.items()):
        return False  # the runner asked for recomputation: predictions are cheap, trainings are kept by their checks
    digests = record.get("sha256")
    return isinstance(digests, dict) and set(digests) == set(names) and not changed_files(target, digests)


def predict_entry(entry: Entry, study: Study, work: Workspace, device: str, train_key: str) -> bool:
    """Segment the test images with the entry's exported model as {0,1} PNGs; return whether it ran.

    Predictions are kept when their record names this training and these weights and every PNG
    is as written; a changed or missing PNG makes them all again."""
    target, model = work.predictions(entry), work.model(entry.name)
    made_by = {"train_key": train_key, "model_sha256": verified_record(model)["sha256"][MODEL_FILE]}
    names = [f"{pair.case_id}{FILE_ENDING}" for pair in study.test]
    if predictions_current(target, made_by, names):
        return False
    inputs = [[str(work.raw / image_file(pair.case_id, "Ts"))] for pair in study.test]
    with captured_output(work.logs / f"predict_{entry.name}.txt"):
        segmentations = model_predictor(model, device).predict_from_files_sequential(inputs, None)
    with atomic_dir(target) as tmp:
        for name, seg in zip(names, segmentations, strict=True):
            save_png(tmp / name, np.asarray(seg).reshape(seg.shape[-2:]).astype(np.uint8))
        write_json(tmp / "prediction.json", {**made_by, "fold": entry.fold, "R": entry.ratio, "sha256": file_digests(tmp, names)})
    return True


# ---------------------------------------------------------------------------------------------
# Evaluation and statistics


def evaluate(study: Study, work: Workspace) -> list[dict]:
    """Dice and HD95 (pixels) of every entry's prediction of every test image."""
    rows = []
    for entry in study.entries:
        for pair in study.test:
            pred = load_png(work.predictions(entry) / f"{pair.case_id}{FILE_ENDING}")
            ref = load_mask_png(pair.mask)
            rows.append({"fold": entry.fold, "R": entry.ratio, "case": pair.case_id, "dice": dice(pred, ref), "hd95": hd95(pred, ref)})
    return rows


def write_per_image(rows: Sequence[dict], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["fold", "R", "case", "dice", "hd95"])
        for row in rows:
            writer.writerow([row["fold"], row["R"], row["case"], f"{row['dice']:.6f}", f"{row['hd95']:.6f}"])


def read_per_image(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [
            {"fold": int(r["fold"]), "R": int(r["R"]), "case": r["case"], "dice": float(r["dice"]), "hd95": float(r["hd95"])}
            for r in csv.DictReader(handle)
        ]


def per_image_values(rows: Sequence[dict], metric: str) -> dict[int, np.ndarray]:
    """R -> the metric per test image, averaged over the folds (cases in sorted order).

    The paper's Fig. 9 compares R on the test images; each image's value is the mean over the
    fold models. An empty prediction (HD95 = inf) makes that image's mean inf.
    """
    ratios = sorted({r["R"] for r in rows})
    cases = sorted({r["case"] for r in rows})
    out = {}
    for ratio in ratios:
        by_case: dict[str, list[float]] = {c: [] for c in cases}
        for row in rows:
            if row["R"] == ratio:
                by_case[row["case"]].append(row[metric])
        out[ratio] = np.array([np.mean(by_case[c]) for c in cases])
    return out


@dataclass(frozen=True)
class MetricStats:
    """Fig. 9 statistics of one metric."""

    summaries: dict[int, dict]
    friedman: tuple[float, float] | None
    wilcoxon: dict[int, float]
    values: dict[int, np.ndarray]


def metric_stats(rows: Sequence[dict], metric: str) -> MetricStats:
    """Summaries over all (fold, image) values per R; Friedman across R and Wilcoxon R0 vs R on
    the per-image fold means (paired by test image)."""
    values = per_image_values(rows, metric)
    summaries = {ratio: summarise(r[metric] for r in rows if r["R"] == ratio) for ratio in values}
    tested = rank_ready(values)
    n_images = len(next(iter(values.values())))
    friedman = friedman_test(*tested.values()) if len(values) >= 3 and n_images >= 2 else None
    wilcoxon = {}
    if 0 in values and n_images >= 2:
        pairs = [(0, ratio) for ratio in values if ratio != 0]
        named = {str(k): v for k, v in tested.items()}
        for result in pairwise_wilcoxon(named, [(str(a), str(b)) for a, b in pairs]):
            wilcoxon[int(result.b)] = result.p
    return MetricStats(summaries, friedman, wilcoxon, values)


def summary_json(stats: dict[str, MetricStats], labels: Sequence[str], entries: Sequence[Entry]) -> dict:
    def clean(x: float) -> float | str:
        return x if math.isfinite(x) else str(x)

    return {
        "labels": list(labels),
        "folds": sorted({e.fold for e in entries}),
        "ratios": sorted({e.ratio for e in entries}),
        "metrics": {
            metric: {
                "per_R": {str(k): {n: clean(v) for n, v in s.items()} for k, s in st.summaries.items()},
                "friedman": None if st.friedman is None else {"chi2": st.friedman[0], "p": st.friedman[1]},
                "wilcoxon_R0_vs": {str(k): {"p": clean(p), "stars": stars(p)} for k, p in st.wilcoxon.items()},
            }
            for metric, st in stats.items()
        },
    }


# ---------------------------------------------------------------------------------------------
# Fig. 9 and its table

_TITLES = {"dice": "DSC", "hd95": "HD95 [px]"}


def _p_text(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "p < 0.0001" if p < 0.0001 else f"p = {p:.4f}" if p < 0.001 else f"p = {p:.3f}"


def _panel(ax: Axes, metric: str, st: MetricStats) -> None:
    ratios = sorted(st.values)
    data = [v[np.isfinite(v)] for v in (st.values[r] for r in ratios)]
    ax.boxplot(data, positions=ratios, widths=0.55, showmeans=True, patch_artist=True,
               boxprops={"facecolor": "#c6dbef"}, medianprops={"color": "#08306b"},
               meanprops={"marker": "^", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 4},
               flierprops={"marker": "o", "markersize": 2, "markeredgewidth": 0.5})
    for ratio, values in zip(ratios, data):
        jitter = np.random.default_rng(ratio).uniform(-0.12, 0.12, values.size)
        ax.scatter(ratio + jitter, values, s=3, color="black", alpha=0.5, linewidths=0, zorder=3)
    labels = []
    for ratio in ratios:
        n_inf = int(np.isinf(st.values[ratio]).sum())
        labels.append(f"R = {ratio}" + (f"\n({n_inf} empty)" if n_inf else ""))
    ax.set_xticks(ratios, labels)
    title = _TITLES[metric]
    if st.friedman is not None:
        title += f" — Friedman χ² = {st.friedman[0]:.2f}, {_p_text(st.friedman[1])}"
    ax.set_title(title)
    ax.set_ylabel(_TITLES[metric])
    ax.grid(axis="y", ls=":", lw=0.5)
    finite = np.concatenate(data) if any(d.size for d in data) else np.zeros(1)
    top, span = float(finite.max()), float(np.ptp(finite)) or 1.0
    for level, (ratio, p) in enumerate(sorted(st.wilcoxon.items())):
        y = top + span * (0.08 + 0.09 * level)
        ax.plot([0, 0, ratio, ratio], [y - span * 0.02, y, y, y - span * 0.02], color="black", lw=0.7)
        ax.text(ratio / 2, y, stars(p) or "ns", ha="center", va="bottom", fontsize=6)
    ax.set_ylim(top=top + span * (0.15 + 0.09 * len(st.wilcoxon)))


def restore_matplotlib_defaults() -> None:
    """Undo nnU-Net's global restyling: its progress plots call ``seaborn.set()``, which would
    otherwise grey every later figure of the process."""
    matplotlib.rcdefaults()


def fig9(stats: dict[str, MetricStats], labels: Sequence[str]) -> Figure:
    """Two panels (DSC, HD95) of per-image values per R, Friedman in the titles, Wilcoxon
    R = 0 vs R > 0 as brackets (* p < 0.05 ... **** p ≤ 0.0001, ns otherwise)."""
    with rc_context(STYLE):
        fig = Figure(figsize=(TEXT_WIDTH_IN, 2.9), layout="constrained")
        for ax, metric in zip(fig.subplots(1, 2), METRICS):
            _panel(ax, metric, stats[metric])
            ax.set_xlabel(r"$R = N_{gen}/N_{real}$")
        fig.suptitle(label_text(labels, TEXT_WIDTH_IN, 6), fontsize=6)
    return fig


def _paper_values() -> tuple[dict[tuple[int, str], str], dict[tuple[str, str], tuple[str, str]]]:
    from iusdiff.outputs.paper import read_csv

    means = {(int(r["R"]), r["metric"]): r["mean"] for r in read_csv("fig9.csv")}
    tests = {(r["metric"], r["test"]): (r["statistic"], r["p_value"]) for r in read_csv("tests_reported.csv") if r["figure"] == "fig9"}
    return means, tests


def _mean_sd(summary: dict, digits: int) -> str:
    if math.isnan(summary["mean"]):
        return "n/a"
    text = f"{summary['mean']:.{digits}f}"
    if not math.isnan(summary["std"]):
        text += f" ± {summary['std']:.{digits}f}"
    if summary["n_finite"] < summary["n"]:
        text += f" ({summary['n'] - summary['n_finite']} empty)"
    return text


_PAPER_METRIC = {"dice": "DSC", "hd95": "HD"}


def fig9_numbers(stats: dict[str, MetricStats], labels: Sequence[str]) -> list[Number]:
    """Our Fig. 9 numbers in the report's long format, under the keys of the paper's (``R0 · DSC · mean``)."""
    label = "; ".join(labels)
    numbers = []
    for metric, st in stats.items():
        name = _PAPER_METRIC[metric]
        for ratio, summary in st.summaries.items():
            numbers.append(Number("Fig. 9", f"R{ratio} · {name} · mean", summary["mean"], label))
        if st.friedman is not None:
            numbers.append(Number("Fig. 9", f"Friedman · {name} · chi2", st.friedman[0], label))
            numbers.append(Number("Fig. 9", f"Friedman · {name} · p", st.friedman[1], label))
        for ratio, p in st.wilcoxon.items():
            numbers.append(Number("Fig. 9", f"Wilcoxon R0 vs R{ratio} · {name} · p", p, label))
    return numbers


def fig9_table(stats: dict[str, MetricStats], labels: Sequence[str]) -> Table:
    """Our mean ± SD per R beside the paper's means, Wilcoxon R0 vs R and Friedman rows."""
    means, tests = _paper_values()
    dsc, hd = stats["dice"], stats["hd95"]
    rows, bold = [], set()
    ratios = sorted(dsc.values)
    for ratio in ratios:
        paper_p = tests.get(("HD", f"Wilcoxon R0 vs R{ratio}"), ("", ""))[1]
        rows.append([
            str(ratio),
            _mean_sd(dsc.summaries[ratio], 3), means.get((ratio, "DSC"), "—"),
            _mean_sd(hd.summaries[ratio], 2), means.get((ratio, "HD"), "—"),
            _p_text(dsc.wilcoxon[ratio]) if ratio in dsc.wilcoxon else "",
            _p_text(hd.wilcoxon[ratio]) if ratio in hd.wilcoxon else "",
            f"HD p {paper_p}" if paper_p else "",
        ])
    for column, st, best in ((1, dsc, max), (3, hd, min)):
        finite = {r: s["mean"] for r, s in st.summaries.items() if not math.isnan(s["mean"])}
        if finite:
            bold.add((ratios.index(best(finite, key=finite.get)), column))

    def friedman_cell(st: MetricStats) -> str:
        return "n/a" if st.friedman is None else f"χ² {st.friedman[0]:.2f}, {_p_text(st.friedman[1])}"

    def paper_friedman(metric: str) -> str:
        chi2, p = tests.get((metric, "Friedman chi2 across R"), ("", ""))
        return f"χ² {chi2}, p {p if p.startswith('<') else '= ' + p}" if chi2 else "—"

    rows.append(["Friedman", friedman_cell(dsc), paper_friedman("DSC"), friedman_cell(hd), paper_friedman("HD"), "", "", ""])
    notes = [
        *labels,
        "Ours: mean ± SD over every (fold model, test image) value; empty predictions (HD95 = inf) are counted, not averaged. "
        "Tests pair the test images, each image's value being its mean over the fold models; an empty prediction ranks worst.",
        "Paper: §4 text and Fig. 9 caption (the DSC mean at R = 3 is not stated; the abstract gives 33.97 for the R = 0 HD).",
    ]
    return Table(
        name="fig9",
        caption="Downstream nnU-Net segmentation of the test images with R = N_gen/N_real synthetic pairs per real training image",
        columns=["R", "ours", "paper", "ours", "paper", "DSC ours", "HD95 ours", "paper"],
        groups=[("", 1), ("DSC", 2), ("HD95 [px]", 2), ("Wilcoxon R = 0 vs R", 3)],
        rows=rows,
        bold=bold,
        notes=notes,
    )
