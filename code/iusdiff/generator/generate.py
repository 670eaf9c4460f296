"""The two-step generator of one trained fold at work: its four models loaded for inference,
masks then images drawn batch by batch (the pipeline's sampling stage, ``code/sample.py``, draws
its pairs here), and N pairs on demand written as PNG pairs or as an nnU-Net v2 raw dataset
(``code/generate.py``, :func:`generate`).

Pair ``index`` has the seed ``seed_for(seed, fold, index)``, as in the sampling stage: its mask
noise and its image noise derive from it alone, so the same options give the same bytes (on the
same device and thread count), and with the fold's own sampling settings (sampler, steps, w,
seed) pair ``index`` starts from the sampling stage's noise for its pair ``index``: the same
pair, though where the two are drawn in batches of other sizes an image can differ in the last
bits (fold 1 of the smoke run, 8 pairs against the stage's 237: every mask and 5 of 8 images
byte-identical).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel

from iusdiff.cli import progress as progress_bar
from iusdiff.data.splits import paper_folds
from iusdiff.errors import InputError
from iusdiff.generator.data import seed_for
from iusdiff.generator.models import MaskConditionedUNet
from iusdiff.generator.sampling import SAMPLERS, sample_images, sample_masks
from iusdiff.generator.training import set_determinism
from iusdiff.io import atomic_dir, write_json
from iusdiff.outputs.layout import OPTIONS, SAMPLES_DIR, fold_dir, model_dir, models_dir
from iusdiff.outputs.nnunet import dataset_json, image_file, label_file
from iusdiff.outputs.samples import Sample, contract_files, write_pairs

# The four parts (the sampling stage's option names) and their trainings' folders under models/.
PARTS = {"mask_vae": "vae_mask", "mask_ldm": "ldm_mask", "image_vae": "vae_image", "ius_ldm": "ldm_ius"}
FORMATS = ("png", "nnunet")
RUN_RECORD = "run.json"  # what run_all.py records of a run, its resolved profile among it


def trained_model(root: str | Path, fold: int, phase: str = "") -> Path:
    """``root/fold{K}/model`` (a training's best model), which must exist."""
    folder = model_dir(root, fold, phase)
    if not folder.is_dir():
        raise InputError(f"{folder}: no trained model (run the training stage for fold {fold} first)")
    return folder


def fold_models(run: str | Path | None, fold: int, **given: str | Path | None) -> dict[str, Path]:
    """The four model folders of fold ``fold`` (keys: :data:`PARTS`): each one given by its part
    name (``mask_vae=DIR``, the ``model`` folder itself), the others the run's
    ``models/<name>/fold{K}/model`` in its output folder ``run``."""
    known = [f.fold for f in paper_folds()]
    if fold not in known:
        raise InputError(f"fold {fold}: expected one of the paper's folds {known}")
    if unknown := sorted(set(given) - set(PARTS)):
        raise InputError(f"unknown model part(s) {unknown}; the parts are {', '.join(PARTS)}")
    if run is not None and not Path(run).is_dir():
        raise InputError(f"{run}: no such output folder")
    dirs = {}
    for part, name in PARTS.items():
        if given.get(part) is not None:
            dirs[part] = Path(given[part])
            if not dirs[part].is_dir():
                raise InputError(f"{dirs[part]}: no such model folder ({name})")
        elif run is None:
            raise InputError(f"no {name} model folder: name it, or the run's output folder to find it in")
        else:
            dirs[part] = trained_model(Path(run) / models_dir(name), fold)
    return dirs


def _loaded(load: Callable, folder: Path):
    """A model read from ``folder``; a folder that holds none is an InputError naming it."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such model folder")
    try:
        return load(folder)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{folder}: not a trained model ({reason})") from None


class TwoStepModels:
    """The four trained parts of one fold, loaded for inference: the mask autoencoder and LDM,
    the image autoencoder and the mask-conditioned iUS LDM (keys: :data:`PARTS`)."""

    def __init__(self, dirs: Mapping[str, str | Path], device: str | torch.device) -> None:
        if missing := [part for part in PARTS if part not in dirs]:
            raise InputError(f"the two-step generator needs its {', '.join(missing)} model folder(s)")
        dirs = {part: Path(dirs[part]) for part in PARTS}
        self.mask_vae = _loaded(AutoencoderKL.from_pretrained, dirs["mask_vae"]).to(device).eval()
        self.image_vae = _loaded(AutoencoderKL.from_pretrained, dirs["image_vae"]).to(device).eval()
        self.mask_unet = _loaded(UNet2DModel.from_pretrained, dirs["mask_ldm"] / "unet").to(device).eval()
        self.mask_schedule = _loaded(DDPMScheduler.from_pretrained, dirs["mask_ldm"] / "scheduler").config
        self.ius = _loaded(MaskConditionedUNet.load, dirs["ius_ldm"]).to(device).eval()
        self.ius_schedule = _loaded(DDPMScheduler.from_pretrained, dirs["ius_ldm"] / "scheduler").config
        self.schedule = self.ius_schedule  # what "all steps" refers to


def in_batches(fn, items: np.ndarray | list, batch: int, *per_item, bar=None) -> np.ndarray:
    """Apply ``fn`` batch by batch to aligned sequences; concatenate the results (``bar``, a
    progress bar, advances by each batch's length)."""
    parts = []
    for i in range(0, len(items), batch):
        parts.append(fn(items[i : i + batch], *[seq[i : i + batch] for seq in per_item]))
        if bar is not None:
            bar.update(len(parts[-1]))
    return np.concatenate(parts)


def generate_masks(models: TwoStepModels, seeds: Sequence[int], cfg: dict, device) -> np.ndarray:
    """{0,1} masks for ``seeds`` with ``cfg``'s sampler, steps and batch size."""

    def masks_for(batch_seeds):
        return sample_masks(models.mask_unet, models.mask_vae, models.mask_schedule, batch_seeds, cfg["sampler"], cfg["steps"], device)

    return in_batches(masks_for, seeds, cfg["batch_size"])


def generate_images(models: TwoStepModels, masks: np.ndarray, seeds: Sequence[int], w: float, cfg: dict, device) -> np.ndarray:
    """uint8 images for ``masks`` with guidance weight ``w``."""

    def images_for(batch_masks, batch_seeds):
        return sample_images(
            models.ius, models.image_vae, models.ius_schedule, batch_masks, batch_seeds, cfg["sampler"], cfg["steps"], w, device
        )

    return in_batches(images_for, masks, cfg["batch_size"], seeds)


def draw_pairs(
    models: TwoStepModels, seeds: Sequence[int], w: float, cfg: dict, device, progress: bool = False, desc: str = "generate"
) -> tuple[np.ndarray, np.ndarray]:
    """({0,1} masks, uint8 images), one pair per seed: per batch the masks, then their images;
    ``progress``: one bar of pairs done (lines at each tenth in a log)."""
    masks, images = [], []
    with progress_bar(total=len(seeds), desc=desc, unit="pair", disable=not progress) as bar:
        for start in range(0, len(seeds), cfg["batch_size"]):
            batch = list(seeds[start : start + cfg["batch_size"]])
            masks.append(generate_masks(models, batch, cfg, device))
            images.append(generate_images(models, masks[-1], batch, w, cfg, device))
            bar.update(len(batch))
    return np.concatenate(masks), np.concatenate(images)


def recorded_sampling(run: str | Path, fold: int) -> tuple[dict, float | None, Path] | None:
    """What a run records of how fold ``fold`` is sampled: the sampling stage's record of the
    fold (``samples/proposed/fold{K}/options.json``: its settings and the w it picked on
    validation), else the run's profile (``run.json``: its ``[sampling]`` section, no pick);
    with the file read. None when the folder has neither."""
    for path in (fold_dir(Path(run) / SAMPLES_DIR, fold) / OPTIONS, Path(run) / RUN_RECORD):
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
            return (record["settings"], record.get("w"), path) if path.name == OPTIONS else (record["profile"]["sampling"], None, path)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: no sampling settings in it ({type(exc).__name__}: {exc})") from None
    return None


def torch_device(name: str | None) -> torch.device:
    """``name`` (cpu, cuda, cuda:1, ...), checked; None: CUDA when there is one, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device {name!r}: not a torch device (use e.g. cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: CUDA is not available here")
    return device


def case_id(index: int) -> str:
    """The nnU-Net case of pair ``index``: ``syn_00000``."""
    return f"syn_{index:05d}"


def nnunet_files(index: int) -> tuple[str, str]:
    """(label, image) of pair ``index`` in an nnU-Net raw dataset."""
    return label_file(case_id(index)), image_file(case_id(index))


def generate(
    models: Mapping[str, str | Path] | TwoStepModels,
    n: int,
    out: str | Path,
    *,
    fmt: str = "png",
    fold: int = 1,
    seed: int = 0,
    w: float = 0.0,
    sampler: str = "ddpm",
    steps: int | str = "all",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
    record: dict | None = None,
) -> list[Sample]:
    """Draw ``n`` mask-image pairs from one fold's models (their four folders, :data:`PARTS`, e.g.
    from :func:`fold_models`, or loaded) and write them to ``out``, replaced atomically.

    ``fmt="png"``: ``masks/{index:05d}.png`` ({0,1}), ``images/{index:05d}.png`` and
    ``manifest.csv`` (the sample contract, :mod:`iusdiff.outputs.samples`). ``fmt="nnunet"``:
    an nnU-Net v2 raw dataset, ``imagesTr/syn_{index:05d}_0000.png``, ``labelsTr/syn_{index:05d}.png``
    and ``dataset.json`` (named after ``out``), with the same ``manifest.csv`` beside them. Both
    get ``options.json``: ``record`` (a script's options) and the resolved ``generation``
    settings. ``steps="all"``: every training step (DDPM only). Returns the manifest's rows;
    empty masks are kept and flagged there.
    """
    if n < 1:
        raise InputError(f"n = {n}: at least one pair")
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if w < 0 or batch_size < 1 or (steps != "all" and (not isinstance(steps, int) or steps < 1)):
        raise InputError(f"guidance {w}, steps {steps!r}, batch size {batch_size}: w >= 0, steps >= 1 (or 'all'), batch size >= 1")
    if steps == "all" and sampler != "ddpm":
        raise InputError(f"sampler {sampler!r} needs a number of steps (steps 'all' is DDPM's)")
    device = torch_device(device) if device is None or isinstance(device, str) else device
    loaded = models if isinstance(models, TwoStepModels) else TwoStepModels(models, device)
    steps = int(loaded.schedule["num_train_timesteps"]) if steps == "all" else steps
    cfg = {"sampler": sampler, "steps": steps, "batch_size": batch_size}
    seeds = [seed_for(seed, fold, index) for index in range(n)]
    set_determinism(seed_for(seed, fold))
    masks, images = draw_pairs(loaded, seeds, w, cfg, device, progress)
    settings = {**cfg, "n": n, "format": fmt, "fold": fold, "seed": seed, "w": w, "device": str(device)}
    if not isinstance(models, TwoStepModels):
        settings["models"] = {part: str(models[part]) for part in PARTS}
    with atomic_dir(out) as tmp:
        samples = write_pairs(tmp, masks, images, seeds, sampler, steps, w, nnunet_files if fmt == "nnunet" else contract_files)
        if fmt == "nnunet":
            description = f"iusdiff: {n} synthetic pairs of the two-step generator (fold {fold}, seed {seed}, w {w})"
            write_json(tmp / "dataset.json", dataset_json(n, Path(out).name, description))
        empty = sum(s.empty for s in samples)
        write_json(tmp / OPTIONS, {**(record or {}), "generation": settings, "empty_masks": empty})
    return samples
