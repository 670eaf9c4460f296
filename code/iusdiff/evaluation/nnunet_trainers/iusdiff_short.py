"""Short nnU-Net v2 trainers for the CPU profiles of the downstream study (paper Fig. 9).

nnU-Net finds trainers by class name. These live outside site-packages: ``iusdiff.downstream``
points the ``nnUNet_extTrainer`` environment variable (nnunetv2 >= 2.8) at this folder, so the
stock ``run_training`` and ``nnUNetPredictor`` machinery load them, and so does the command
line (``nnUNetv2_train ... -tr nnUNetTrainer_iusdiffDefault``) with that variable set.

Everything nnU-Net plans (network, patch size, normalisation, augmentation, loss, optimiser,
poly learning-rate schedule) is kept; only the budget shrinks:

* fewer epochs and iterations per epoch, and a smaller batch than planned;
* a few validation batches per epoch (the pseudo-Dice on the real validation images that picks
  ``checkpoint_best``);
* no final sliding-window validation export: the study evaluates on the test images, and that
  export starts a pool of spawned worker processes costing more than the training itself;
* no ``checkpoint_best.pth``: the study predicts with ``checkpoint_final.pth`` (nnU-Net's
  prediction default), and each 60 MB copy of the planned network would double the disk use;
* every checkpoint gets a ``<name>.sha256`` beside it once written: nnU-Net resumes by unpickling
  the checkpoint, which iusdiff allows only for a file that still has that digest.

This module imports nothing from ``iusdiff`` because nnU-Net imports it as a top-level module.
"""

from __future__ import annotations

import hashlib
import os

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_iusdiffDefault(nnUNetTrainer):
    """The ``default`` profile: 20 trainings in minutes on a 2-core CPU at 64 px."""

    EPOCHS = 2
    ITERATIONS = 12
    VAL_ITERATIONS = 2
    BATCH_SIZE = 8

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.EPOCHS
        self.num_iterations_per_epoch = self.ITERATIONS
        self.num_val_iterations_per_epoch = self.VAL_ITERATIONS

    def _set_batch_size_and_oversample(self) -> None:
        super()._set_batch_size_and_oversample()
        self.batch_size = min(self.batch_size, self.BATCH_SIZE)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        self.print_to_log_file("iusdiff short trainer: final validation export skipped (the study predicts the test set)")

    def save_checkpoint(self, filename: str) -> None:
        if os.path.basename(filename) == "checkpoint_best.pth":
            return
        super().save_checkpoint(filename)
        if self.local_rank == 0:
            with open(filename, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            with open(f"{filename}.sha256.tmp", "w") as handle:
                handle.write(digest + "\n")
            os.replace(f"{filename}.sha256.tmp", f"{filename}.sha256")


class nnUNetTrainer_iusdiffSmoke(nnUNetTrainer_iusdiffDefault):
    """The ``smoke`` profile and the tests: one epoch of a few iterations."""

    EPOCHS = 1
    ITERATIONS = 4
    VAL_ITERATIONS = 1
    BATCH_SIZE = 4
