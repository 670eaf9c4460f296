"""The output folder's layout: every folder and file a stage owns, named once here.

The pipeline runs each script inside the output folder (OUT) with relative paths (see
iusdiff.pipeline.runner), so the names below are strings relative to OUT; the per-fold helpers take
any root, a script's ``--out`` or an input folder. docs/pipeline.md ("What the default run
produces") describes the same tree::

    phantom/RESECT/, phantom/RESECT_segmentation/   the embedded phantom, in RESECT's layout
    slices/                    the prepared 2-D slices, slices.csv and splits.json (SPEC §3)
    pretrain/corpus/           the CPU profiles' outside pretraining corpus (iusdiff.data.corpus)
    pretrain/<part>/fold0/     a base model trained on it (fold 0: the corpus's own split)
    pretrain/base/             the base assembled in SD-1.5's layout (part names: iusdiff.weights)
    models/<model>/fold{K}/    a per-fold training (SPEC §4): model/, checkpoints/, log.csv,
                               validation.csv, options.json; the ControlNet baseline has one
                               such folder per phase, fold{K}/phase_a/ and fold{K}/phase_b/
    samples/<model>/fold{K}/   generated pairs in the sample contract (iusdiff.outputs.samples)
    metrics/<kind>/            per-mask and per-image metrics behind Tables 2-4 and Fig. 8 (SPEC §5)
    downstream/                the nnU-Net study (iusdiff.evaluation.downstream); predictions/fold{K}_R{R}/
    tables/, figures/          the paper's tables (.csv, .md, .tex) and figures (.png, .pdf)
    results/                   every reproduced number in long format; report.md beside it
    cache/                     content-addressed caches (Inception features)
    logs/, settings/<stage>.json, .stages/, checksums.sha256   the runner's bookkeeping

Stage instances of a per-fold stage are named ``<stage>@fold{K}`` after the same pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# Top-level folders and files of OUT.
PHANTOM_DIR = "phantom"
RESECT_DIR, RESECT_SEG_DIR = "RESECT", "RESECT_segmentation"  # the phantom's two data roots
SLICES_DIR = "slices"
PRETRAIN_DIR = "pretrain"
CORPUS_DIR = f"{PRETRAIN_DIR}/corpus"  # the outside pretraining corpus, apart from the study data
BASE_DIR = f"{PRETRAIN_DIR}/base"      # the CPU profiles' pretrained base, SD-1.5's analogue
BASE_RECORD, BASE_MASK_RECORD = "base.json", "base_mask.json"  # what make_base.py assembled, per group
MODELS_DIR = "models"
SAMPLES_ROOT = "samples"
METRICS_DIR = "metrics"
DOWNSTREAM_DIR = "downstream"
TABLES_DIR, FIGURES_DIR, RESULTS_DIR = "tables", "figures", "results"
LOGS_DIR = "logs"
CACHE_DIR = "cache"  # content-addressed caches (Inception features), outside the checksums
REPORT_FILE = "report.md"
SETTINGS_DIR = "settings"  # settings/<stage>.json: what each stage was handed
STATE_DIR = ".stages"      # .stages/<stage instance>.json: the runner's record of each stage
MANIFEST = "checksums.sha256"

# One fold's folder and what a training or sampling run writes in it.
FOLD_PATTERN = "fold{fold}"
MODEL_DIR = "model"  # a training's best model
CHECKPOINTS = "checkpoints"
OPTIONS = "options.json"

TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("png", "pdf")


def fold_name(fold: int) -> str:
    """``fold{K}``: a fold's folder, and the suffix of a per-fold stage instance's name."""
    return FOLD_PATTERN.format(fold=fold)


def fold_dir(root: str | Path, fold: int) -> Path:
    return Path(root) / fold_name(fold)


def model_dir(root: str | Path, fold: int, phase: str = "") -> Path:
    """A training's best model: ``root/fold{K}/model`` (``root/fold{K}/<phase>/model`` for the
    ControlNet baseline's phases)."""
    return fold_dir(root, fold) / phase / MODEL_DIR


def per_fold(folder: str) -> str:
    """``folder/fold{fold}``: a per-fold stage's output, ``{fold}`` filled in per instance."""
    return f"{folder}/{FOLD_PATTERN}"


def _inside(folder: str, suffix: str = "") -> Callable[[str], str]:
    """``name -> folder/<name><suffix>``: one entry of a top-level folder."""
    return lambda name: f"{folder}/{name}{suffix}"


pretrain_dir = _inside(PRETRAIN_DIR)            # pretrain/<part>: a base model's training
models_dir = _inside(MODELS_DIR)                # models/<model>: its per-fold trainings
samples_dir = _inside(SAMPLES_ROOT)             # samples/<model>: its generated sets
metrics_dir = _inside(METRICS_DIR)              # metrics/<kind>: masks, images, figures
logs_dir = _inside(LOGS_DIR)                    # logs/<stage>
settings_file = _inside(SETTINGS_DIR, ".json")  # settings/<stage>.json
result_file = _inside(RESULTS_DIR, ".csv")      # results/<name>.csv
SAMPLES_DIR = samples_dir("proposed")           # the two-step generator's pairs


def table_files(*names: str) -> tuple[str, ...]:
    """``tables/<name>.{csv,md,tex}`` for each name (iusdiff.outputs.tables writes the three)."""
    return tuple(f"{TABLES_DIR}/{name}.{ext}" for name in names for ext in TABLE_FORMATS)


def figure_files(*names: str) -> tuple[str, ...]:
    """``figures/<name>.{png,pdf}`` for each name (iusdiff.outputs.plotting.save_figure's formats)."""
    return tuple(f"{FIGURES_DIR}/{name}.{ext}" for name in names for ext in FIGURE_FORMATS)
