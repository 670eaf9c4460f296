"""The training loop shared by every generator model: accelerate, checkpoints, resume, best model.

A task (:class:`Task`) owns its models and does one optimisation step at a time; this module
runs the steps, validates, keeps the best model and checkpoints. Checkpoints hold everything a
step depends on besides its number (weights, optimizer and learning-rate states, the step,
the best score, the loss history) as safetensors + JSON, never pickles. Random draws are
functions of (seed, step) (see :mod:`iusdiff.generator.data`), so ``--resume`` after an interruption
continues with exactly the loss sequence of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from iusdiff.cli import progress
from iusdiff.io import atomic_dir, atomic_path, changed_files, file_digests, visible_files, write_json
from iusdiff.outputs.layout import CHECKPOINTS, MODEL_DIR

STATE_FILE = "state.json"
BEST_DIR = "best"  # in a checkpoint: the best model up to its step
SET_ASIDE = ".set-aside"  # in a fold: checkpoints that failed their check (hidden: no output)


def make_accelerator(mixed_precision: str) -> Accelerator:
    """Device and precision for training; trained weights stay fp32 (autocast computes in
    bf16/fp16), which is what lets the fp16 grad scaler unscale them."""
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())


def set_determinism(seed: int) -> None:
    """Seed every global RNG (model initialisation draws from torch's); pin GPU algorithms.

    On CPU, PyTorch's deterministic mode sends oneDNN convolutions down a path about six
    times slower here, while the default CPU kernels already give identical results run to
    run at a fixed thread count (the checksum tests guard this); it is used on GPUs only.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def run_key(*parts: Any) -> str:
    """Identity of a training run (options, data, code): a checkpoint resumes only its own run."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    validation_steps: int
    checkpointing_steps: int
    keep_checkpoints: int = 1
    warmup_steps: int = 0
    lr_schedule: str = "constant"

    @classmethod
    def from_settings(cls, cfg: dict, steps: int) -> LoopConfig:
        """The loop settings of a profile section (warm-up and schedule optional)."""
        return cls(
            steps=steps,
            validation_steps=cfg["validation_steps"],
            checkpointing_steps=cfg["checkpointing_steps"],
            keep_checkpoints=cfg["keep_checkpoints"],
            warmup_steps=cfg.get("warmup_steps", 0),
            lr_schedule=cfg.get("lr_schedule", "constant"),
        )


def lr_factor(step: int, cfg: LoopConfig) -> float:
    """Linear warm-up, then constant (the paper's) or cosine decay to zero at the last step
    (short CPU runs: annealing stands in for the long plateau of the paper's training)."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps))
    return warm


def set_learning_rates(optimizers: dict[str, torch.optim.Optimizer], step: int, cfg: LoopConfig) -> None:
    """The learning rate is a function of the step (no scheduler state to save or restore)."""
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * lr_factor(step, cfg)


class Task(Protocol):
    """One model's training: what the loop checkpoints and the step it repeats."""

    def modules(self) -> dict[str, torch.nn.Module]:
        """Trainable modules, by name (checkpointed)."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers, by name (checkpointed); their learning rates follow the warm-up."""

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step (backward and optimizer steps included); logged values."""

    def validate(self) -> float:
        """Validation score of the current weights; lower is better."""

    def save_model(self, folder: Path) -> None:
        """Write the deployable model (``save_pretrained`` folders) into ``folder``."""




@dataclass
class LoopState:
    step: int = 0
    best: float = math.inf
    best_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Checkpoints: safetensors for tensors, JSON for the rest


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, rest = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}/{name}"] = value.detach().contiguous().cpu()
            else:
                rest["scalars"][f"{index}/{name}"] = value
    return tensors, rest


def _join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *rest["scalars"].items()]:
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary folders are dot-named)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).is_file())


def save_checkpoint(
    root: Path,
    key: str,
    state: LoopState,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    accelerator: Accelerator,
    keep: int,
    best_model: Path,
) -> Path:
    """A checkpoint holds the best model so far too (``best_model``, copied in): a resumed run
    must not depend on a model folder that may have changed since."""
    target = root / f"step-{state.step:07d}"
    with atomic_dir(target) as tmp:
        optim_json = {}
        for name, module in modules.items():
            weights = {k: v.detach().contiguous().cpu() for k, v in accelerator.unwrap_model(module).state_dict().items()}
            save_file(weights, tmp / f"{name}.safetensors")
        for name, optimizer in optimizers.items():
            tensors, rest = _split_optimizer_state(optimizer.state_dict())
            save_file(tensors, tmp / f"{name}.optimizer.safetensors")
            optim_json[name] = rest
        if best_model.is_dir():
            shutil.copytree(best_model, tmp / BEST_DIR)
        write_json(
            tmp / STATE_FILE,
            {
                "run_key": key,
                "step": state.step,
                "best": state.best if math.isfinite(state.best) else None,
                "best_step": state.best_step,
                "history": state.history,
                "validation": state.validation,
                "optimizers": optim_json,
                "files": file_digests(tmp, visible_files(tmp)),  # state.json is written last
            },
        )
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old)
    return target


class BadCheckpoint(Exception):
    """A checkpoint that cannot be trusted: unreadable, incomplete, or changed since it was written."""


def read_checkpoint(folder: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """A checkpoint's state and tensors (by file stem), each file checked against the digest
    recorded when it was written, before anything is loaded into a model."""
    try:
        meta = json.loads((folder / STATE_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadCheckpoint(f"{STATE_FILE} unreadable ({exc})") from None
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict):
        raise BadCheckpoint(f"{STATE_FILE} records no file digests")
    problems = changed_files(folder, files)
    if problems:
        kind, rel = problems[0].split(": ", 1)
        raise BadCheckpoint(f"{rel} is missing" if kind == "missing" else f"{rel} changed since it was written")
    try:
        tensors = {Path(rel).stem: load_file(folder / rel) for rel in files if "/" not in rel and rel.endswith(".safetensors")}
    except Exception as exc:  # safetensors raises its own error type for a corrupt header
        raise BadCheckpoint(f"unreadable tensors ({exc})") from None
    return meta, tensors


def load_checkpoint(
    folder: Path,
    meta: dict,
    tensors: dict[str, dict[str, torch.Tensor]],
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    accelerator: Accelerator,
    best_model: Path,
) -> LoopState:
    """Load a checkpoint read by :func:`read_checkpoint` and put its best model back in place."""
    for name, module in modules.items():
        accelerator.unwrap_model(module).load_state_dict(tensors[name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(_join_optimizer_state(tensors[f"{name}.optimizer"], meta["optimizers"][name]))
    if accelerator.is_main_process:
        if (folder / BEST_DIR).is_dir():
            with atomic_dir(best_model) as tmp:
                shutil.copytree(folder / BEST_DIR, tmp, dirs_exist_ok=True)
        elif best_model.exists():
            shutil.rmtree(best_model)  # no model was best yet at that step
    best = meta["best"]
    return LoopState(
        step=meta["step"],
        best=math.inf if best is None else best,
        best_step=meta["best_step"],
        history=meta["history"],
        validation=meta["validation"],
    )


def set_aside(checkpoint: Path, why: str, log: Callable[[str], None]) -> None:
    """Move a bad checkpoint out of the way (hidden beside the fold: no output, never deleted)."""
    target = checkpoint.parent.parent / SET_ASIDE / checkpoint.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):  # another rank of a distributed run moved it first
        os.replace(checkpoint, target)
    log(f"warning: {checkpoint}: {why}; set aside as {target}")


def resumable_checkpoint(root: Path, key: str, log: Callable[[str], None]) -> tuple[Path, dict, dict] | None:
    """The latest sound checkpoint of this very run with its state and tensors, or None. Bad
    checkpoints are set aside (the one before them is tried next); other runs' are dropped."""
    for latest in reversed(checkpoint_dirs(root)):
        try:
            meta, tensors = read_checkpoint(latest)
        except BadCheckpoint as exc:
            set_aside(latest, str(exc), log)
            continue
        if meta.get("run_key") == key:
            return latest, meta, tensors
        log(f"{root}: checkpoints belong to a different run (options, data or code changed); starting afresh")
        shutil.rmtree(root)
        return None
    return None


# ---------------------------------------------------------------------------------------------
# The loop


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """A CSV of logged values per step (repr floats: identical runs give identical bytes).

    Columns: ``step``, then the rest sorted, because a resumed run reads its earlier rows back
    from a checkpoint's JSON, whose keys are sorted; first-seen order would differ after resume.
    """
    keys = {k for row in rows for k in row}
    fields = [k for k in ("step",) if k in keys] + sorted(keys - {"step"})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def train(
    task: Task,
    cfg: LoopConfig,
    out: Path,
    key: str,
    accelerator: Accelerator,
    resume: bool,
    desc: str,
    log: Callable[[str], None] = print,
) -> LoopState:
    """Run ``task`` to ``cfg.steps``; the best-validating weights end up in ``out/model``.

    Validation and checkpoints happen every ``validation_steps`` / ``checkpointing_steps`` and
    at the last step. ``resume`` continues from the latest checkpoint of the same run key.
    """
    modules, optimizers = task.modules(), task.optimizers()
    ckpt_root = out / CHECKPOINTS
    state = LoopState()
    found = resumable_checkpoint(ckpt_root, key, log) if resume else None
    if found is not None:
        latest, meta, tensors = found
        state = load_checkpoint(latest, meta, tensors, modules, optimizers, accelerator, out / MODEL_DIR)
        log(f"{desc}: resuming from {latest.name}")
    elif ckpt_root.exists() and accelerator.is_main_process:
        shutil.rmtree(ckpt_root)
    bar = progress(total=cfg.steps, initial=state.step, desc=desc, unit="step", disable=not accelerator.is_local_main_process)
    for step in range(state.step, cfg.steps):
        set_learning_rates(optimizers, step, cfg)
        values = task.train_step(step)
        state.step = step + 1
        state.history.append({"step": state.step, **values})
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()})
        last = state.step == cfg.steps
        if state.step % cfg.validation_steps == 0 or last:
            score = task.validate()
            state.validation.append({"step": state.step, "score": score})
            if score < state.best:
                state.best, state.best_step = score, state.step
                if accelerator.is_main_process:
                    with atomic_dir(out / MODEL_DIR) as tmp:
                        task.save_model(tmp)
        if (state.step % cfg.checkpointing_steps == 0 or last) and accelerator.is_main_process:
            save_checkpoint(ckpt_root, key, state, modules, optimizers, accelerator, cfg.keep_checkpoints, out / MODEL_DIR)
        accelerator.wait_for_everyone()
    bar.close()
    if accelerator.is_main_process:
        write_history(out / "log.csv", state.history)
        write_history(out / "validation.csv", state.validation)
    return state
