"""A trained nnU-Net fold as plain, checksummed files, and nnU-Net's predictor built from them.

nnU-Net keeps a trained fold as ``checkpoint_final.pth``: one pickle with the weights, the
optimiser state, the training log (with timestamps) and the trainer's arguments, which its
predictor unpickles with ``weights_only=False`` (a changed file could run any code, and the
timestamps change its bytes at every training). So after training, :func:`export_model` reads it
once through torch's restricted unpickler (``weights_only=True``; beside tensors and containers
it admits only the numpy scalars of the training log) and writes what prediction needs:

* ``model.safetensors``: the network's state dict, each tensor once under its first name in
  sorted order (nnU-Net's decoder holds the encoder, so its state dict names each encoder
  tensor several times; safetensors stores no aliases);
* ``plans.json`` and ``dataset.json``: the plans and dataset description it was trained with;
* ``model.json``: trainer class, configuration, mirroring axes, the caller's training key and
  the sha256 of the three files above, recorded when they were written.

Nothing in them depends on the time, so the same training exports the same bytes. Before any
use the files are checked against ``model.json`` (:func:`model_problem`), and
:func:`model_predictor` builds the network and predictor with nnU-Net's own functions
(``PlansManager``, the trainer class's ``build_network_architecture``,
``nnUNetPredictor.manual_initialization``): the pickle is never read for prediction.

The trainer class is found by name, as nnU-Net does: iusdiff's short trainers only with
``nnUNet_extTrainer`` pointing at them (``downstream.set_nnunet_environment``).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path

from iusdiff.errors import InputError
from iusdiff.io import atomic_dir, changed_files, file_digests, read_record, write_bytes, write_json, write_text

CHECKPOINT = "checkpoint_final.pth"
MODEL_FILE, PLANS_FILE, DATASET_FILE, RECORD_FILE = "model.safetensors", "plans.json", "dataset.json", "model.json"
DIGESTED = (MODEL_FILE, PLANS_FILE, DATASET_FILE)
RECORDED = ("trainer", "configuration", "mirroring_axes", "train_key", "sha256")


# ---------------------------------------------------------------------------------------------
# Export


def _log_scalar_types() -> list[type]:
    """The non-tensor globals nnU-Net's checkpoint holds: numpy scalars of its training log
    (``logging``, ``_best_ema``). Plain values, nothing that runs code when unpickled."""
    import numpy as np

    return [np._core.multiarray.scalar, np.dtype, np.dtypes.Float32DType, np.dtypes.Float64DType]


def _one_line(exc: Exception) -> str:
    """The line of torch's multi-line unpickling message that names the problem."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return next((line for line in lines if "WeightsUnpickler error" in line), lines[0])


def read_checkpoint(path: Path) -> dict:
    """nnU-Net's checkpoint through torch's restricted unpickler (``weights_only=True``)."""
    import torch

    try:
        with torch.serialization.safe_globals(_log_scalar_types()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: not found (nnU-Net's training did not finish)") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise InputError(f"{path}: not a plain nnU-Net checkpoint: {_one_line(exc)}") from None


def _unaliased(state_dict: Mapping) -> dict:
    """Each tensor of a state dict once, under its first name in sorted order.

    ``safetensors.torch.save_model`` drops aliases too, but records them as metadata in an order
    that varies from run to run; this keeps the file's bytes a function of the weights."""
    kept: dict[tuple, str] = {}
    for name in sorted(state_dict):
        tensor = state_dict[name]
        kept.setdefault((tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride()), name)
    return {name: state_dict[name] for name in kept.values()}


def _write_nnunet_json(path: Path, value: dict) -> None:
    """JSON in the key order nnU-Net wrote it (its readers take the dicts as they come)."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def export_model(fold_folder: Path, target: Path, train_key: str, about: Mapping[str, object]) -> None:
    """Write the prediction files of the nnU-Net fold in ``fold_folder`` into ``target`` (replaced
    atomically); ``model.json`` records ``train_key``, ``about`` and the files' sha256."""
    from safetensors.torch import save

    checkpoint = read_checkpoint(fold_folder / CHECKPOINT)
    axes = checkpoint.get("inference_allowed_mirroring_axes")
    settings = {
        "trainer": checkpoint["trainer_name"],
        "configuration": checkpoint["init_args"]["configuration"],
        "mirroring_axes": None if axes is None else list(axes),
    }
    with atomic_dir(target) as tmp:
        _write_nnunet_json(tmp / PLANS_FILE, checkpoint["init_args"]["plans"])
        _write_nnunet_json(tmp / DATASET_FILE, checkpoint["init_args"]["dataset_json"])
        network = _untrained_network(tmp, settings)[0]
        network.load_state_dict(checkpoint["network_weights"])
        write_bytes(tmp / MODEL_FILE, save(_unaliased(network.state_dict())))
        write_json(tmp / RECORD_FILE, {**about, **settings, "train_key": train_key, "sha256": file_digests(tmp, DIGESTED)})


# ---------------------------------------------------------------------------------------------
# Checks and loading


def model_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be trusted as an exported model (one line naming the file), or None."""
    record_path = folder / RECORD_FILE
    record = read_record(record_path)
    if record is None:
        return f"{record_path}: missing or unreadable (no exported nnU-Net model in {folder})"
    if missing := [field for field in RECORDED if field not in record]:
        return f"{record_path}: lacks {', '.join(missing)} (not written by the export)"
    digests = record["sha256"]
    if not isinstance(digests, dict) or set(digests) != set(DIGESTED):
        return f"{record_path}: records no sha256 of {', '.join(DIGESTED)}"
    problems = changed_files(folder, digests)
    if problems:
        return (f"{folder / problems[0].split(': ', 1)[1]}: missing or changed since it was exported (its sha256 differs from {record_path}); "
                "rerun the downstream stage to retrain the model")
    return None


def is_current(folder: Path, train_key: str) -> bool:
    """Whether ``folder`` holds the export of the training ``train_key``, every file as exported."""
    return model_problem(folder) is None and read_record(folder / RECORD_FILE)["train_key"] == train_key


def verified_record(folder: Path) -> dict:
    """The export's ``model.json`` once every file matches it; InputError naming the file otherwise."""
    problem = model_problem(folder)
    if problem is not None:
        raise InputError(problem)
    return read_record(folder / RECORD_FILE)


def _untrained_network(folder: Path, settings: Mapping):
    """(network, plans manager, configuration manager, dataset.json) of an export's files, the
    network built as nnU-Net's predictor builds it, before any weights are loaded."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = json.loads((folder / DATASET_FILE).read_text())
    plans_manager = PlansManager(json.loads((folder / PLANS_FILE).read_text()))
    configuration_manager = plans_manager.get_configuration(settings["configuration"])
    network = recursive_find_trainer_class_by_name(settings["trainer"]).build_network_architecture(
        plans_manager, configuration_manager,
        determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    return network, plans_manager, configuration_manager, dataset_json


def model_predictor(folder: Path, device: str, mirroring: bool = True):
    """nnU-Net's predictor (sliding window, Gaussian weighting) of an exported fold, its files
    checked first, with the weights loaded into the network once.

    ``nnUNetPredictor`` reloads every fold's state dict before each image so that it can ensemble
    folds; with one fold that reload is the same weights again, and on a CPU it was 30% of the
    stand-in segmenter's time per 64 px image. Everything else is nnU-Net's own code, so the
    logits are the same bits as its stock predictor's on the checkpoint (tests check it)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from safetensors.torch import load_model

    class OneFoldPredictor(nnUNetPredictor):
        @torch.inference_mode()
        def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
            return self.predict_sliding_window_return_logits(data).to("cpu")

    record = verified_record(folder)
    network, plans_manager, configuration_manager, dataset_json = _untrained_network(folder, record)
    load_model(network, str(folder / MODEL_FILE))
    predictor = OneFoldPredictor(
        tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring, perform_everything_on_device=device != "cpu",
        device=torch.device(device), verbose=False, verbose_preprocessing=False, allow_tqdm=False,
    )
    axes = record["mirroring_axes"]
    predictor.manual_initialization(network, plans_manager, configuration_manager, None, dataset_json, record["trainer"],
                                    None if axes is None else tuple(axes))
    return predictor
