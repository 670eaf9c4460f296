"""MedSAM segmentation of generated iUS images, prompted by the conditioning mask (paper §3.5).

The paper measures morphological fidelity by segmenting each generated image with MedSAM
(SAM ViT-B finetuned on medical images) and comparing the prediction with the mask that
conditioned the image. Prompting follows MedSAM's own inference recipe:

* one box per external contour of the conditioning mask, tight around its pixels
  ``[x_min, y_min, x_max, y_max]`` (inclusive, as MedSAM's training boxes), scaled to 1024;
* the image repeated to 3 channels, resized to 1024×1024 (cubic, anti-aliased), min-max scaled
  to [0, 1] and fed to the image encoder directly (no SAM mean/std);
* ``mask_decoder(multimask_output=False)``, sigmoid, bilinear resize back, threshold 0.5;
* the union of the per-box predictions is the segmentation.

Weights: ``medsam_vit_b.pth`` (a plain state dict), loaded on CPU with ``weights_only=True``
(upstream ``build_sam`` calls ``torch.load`` without either).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam
from skimage.transform import resize

from iusdiff.errors import InputError

MEDSAM_SIZE = 1024
WEIGHTS_HINT = (
    "download medsam_vit_b.pth (MedSAM, Ma et al. 2024) and put it at weights/medsam_vit_b.pth "
    "or pass --medsam-checkpoint PATH"
)


def load_medsam(checkpoint: str | Path, builder: Callable[[], Sam] | None = None, device: str = "cpu") -> Sam:
    """A SAM model with MedSAM weights, in eval mode; any problem names the file."""
    path = Path(checkpoint)
    if not path.is_file():
        raise InputError(f"MedSAM checkpoint not found at {path}: {WEIGHTS_HINT}")
    model = (builder or sam_model_registry["vit_b"])()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: not a usable MedSAM ViT-B checkpoint ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()


def boxes_from_mask(mask: np.ndarray) -> np.ndarray:
    """One inclusive pixel box [x_min, y_min, x_max, y_max] per external contour."""
    contours, _ = cv2.findContours((mask > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append([x, y, x + w - 1, y + h - 1])
    return np.asarray(sorted(boxes), dtype=np.float64).reshape(-1, 4)


def scale_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel boxes of an H×W image to MedSAM's 1024×1024 frame."""
    return boxes / np.array([width, height, width, height], dtype=np.float64) * MEDSAM_SIZE


def preprocess(image: np.ndarray) -> torch.Tensor:
    """uint8 H×W → (1, 3, 1024, 1024) float in [0, 1], MedSAM's way."""
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    big = resize(rgb, (MEDSAM_SIZE, MEDSAM_SIZE), order=3, preserve_range=True, anti_aliasing=True).astype(np.uint8)
    low, high = float(big.min()), float(big.max())
    unit = (big - low) / max(high - low, 1e-8)
    return torch.from_numpy(unit).float().permute(2, 0, 1).unsqueeze(0)


@torch.no_grad()
def segment(model: Sam, image: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """MedSAM's {0,1} segmentation of ``image`` prompted by the boxes of ``condition``.

    An empty conditioning mask gives no prompt and therefore an empty prediction.
    """
    if image.shape != condition.shape:
        raise ValueError(f"image {image.shape} and mask {condition.shape} differ in shape")
    height, width = image.shape
    boxes = boxes_from_mask(condition)
    if not len(boxes):
        return np.zeros((height, width), np.uint8)
    device = next(model.parameters()).device
    embedding = model.image_encoder(preprocess(image).to(device))
    box_tensor = torch.as_tensor(scale_boxes(boxes, height, width), dtype=torch.float32, device=device)[:, None, :]
    sparse, dense = model.prompt_encoder(points=None, boxes=box_tensor, masks=None)
    logits, _ = model.mask_decoder(
        image_embeddings=embedding,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    probabilities = F.interpolate(torch.sigmoid(logits), size=(height, width), mode="bilinear", align_corners=False)
    return (probabilities > 0.5).any(dim=0)[0].cpu().numpy().astype(np.uint8)
