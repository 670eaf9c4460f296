"""nnU-Net v2's raw dataset format, as every writer of one here uses it: the downstream study
(:mod:`iusdiff.evaluation.downstream`) and synthetic pairs on demand (``code/generate.py``).

A raw dataset holds ``imagesTr/<case>_0000.png`` (the single channel, uint8 iUS),
``labelsTr/<case>.png`` ({0,1}: background, tumour), optionally ``imagesTs``/``labelsTs`` in
the same form, and ``dataset.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iusdiff.io import save_png

FILE_ENDING = ".png"
CHANNEL = "iUS"
LABELS = {"background": 0, "tumour": 1}


def image_file(case_id: str, part: str = "Tr") -> str:
    """``images<part>/<case>_0000.png``, relative to the dataset folder."""
    return f"images{part}/{case_id}_0000{FILE_ENDING}"


def label_file(case_id: str, part: str = "Tr") -> str:
    """``labels<part>/<case>.png``, relative to the dataset folder."""
    return f"labels{part}/{case_id}{FILE_ENDING}"


def write_case(target: Path, case_id: str, image: np.ndarray, mask: np.ndarray, part: str = "Tr") -> None:
    """One case: its uint8 image and {0,1} label."""
    save_png(target / image_file(case_id, part), image)
    save_png(target / label_file(case_id, part), mask)


def dataset_json(num_training: int, name: str, description: str) -> dict:
    """``dataset.json`` of a one-channel iUS dataset with the tumour label."""
    return {
        "channel_names": {"0": CHANNEL},
        "labels": dict(LABELS),
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "name": name,
        "description": description,
    }
