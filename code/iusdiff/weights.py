"""The weights a profile needs, checked at start-up before any work, and the deviation that an
absent optional one causes.

* Required: Stable Diffusion 1.5 in diffusers format where a profile finetunes it, and the MedSAM
  ViT-B checkpoint where its segmenter is MedSAM (both: the ``paper`` profile). Missing or
  unreadable, the run stops before any work with a message naming the file and where it goes.
* Optional: torchvision's VGG16 ImageNet weights for the autoencoders' perceptual (LPIPS) term.
  Without them the term is off, and :func:`weight_deviations` names that in the label every
  number of the run carries (``config.provenance``: every table's notes, figure and the report).

Importing this module imports no torch (the stage runner imports it); the checks that read a
checkpoint import torch, transformers or segment_anything when they run.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iusdiff.errors import InputError

SD_SUBFOLDERS = ("vae", "unet", "text_encoder", "tokenizer")
TEXT_SUBFOLDERS = ("text_encoder", "tokenizer")
# The fixed text input a base records when it has no text encoder (the CPU profiles' base).
TEXT_FILE = "text_embedding.safetensors"
UNET_DIR, SCHEDULER_DIR = "unet", "scheduler"
# A pretrained base's folders: SD-1.5's vae/ and unet/; the CPU profiles' base (pretrained on
# the outside corpus) adds the mask models the paper trains from scratch.
MASK_VAE_DIR, MASK_UNET_DIR = "vae_mask", "unet_mask"
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1, what LPIPS-VGG loads
PERCEPTUAL_SECTIONS = ("vae_image", "vae_mask", "vae_joint")
PERCEPTUAL_OFF = (
    f"perceptual (LPIPS) term off: no VGG16 ImageNet weights ({VGG16_FILE} in $TORCH_HOME/hub/checkpoints/, "
    "torch's hub cache; put it there to enable the term)"
)


# ---------------------------------------------------------------------------------------------
# Stable Diffusion 1.5


def resolve_pretrained(reference: str | Path) -> Path:
    """A local diffusers-format directory, or a Hub repo id already in the local HF cache.

    Nothing is downloaded: a repo id is looked up with ``local_files_only=True``.
    """
    path = Path(reference)
    if path.is_dir():
        return path
    if "/" in str(reference) and not path.is_absolute() and not str(reference).startswith("."):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(str(reference), local_files_only=True))
        except (LocalEntryNotFoundError, ValueError, OSError):
            pass
    raise InputError(
        f"pretrained weights not found: {reference}; put Stable Diffusion 1.5 in diffusers format "
        "(folders vae/, unet/, text_encoder/, tokenizer/) there, e.g. a copy of "
        "stable-diffusion-v1-5/stable-diffusion-v1-5, or pass --pretrained DIR"
    )


def check_pretrained(reference: str | Path, subfolders: tuple[str, ...] = SD_SUBFOLDERS) -> Path:
    """Fail before any work if a subfolder's config or weights are missing or unreadable, or if
    the installed transformers cannot read the tokenizer and text encoder."""
    root = resolve_pretrained(reference)
    if (root / TEXT_FILE).is_file():
        subfolders = tuple(sub for sub in subfolders if sub not in TEXT_SUBFOLDERS)
    for sub in subfolders:
        folder = root / sub
        if sub == "tokenizer":
            present = (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file()
        else:
            present = (folder / "config.json").is_file() and (any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")))
        if not present:
            raise InputError(f"{folder}: missing or incomplete (need config and weights); {root} must be SD-1.5 in diffusers format")
        for weights in sorted(folder.glob("*.safetensors")):
            check_safetensors(weights)
    if "text_encoder" in subfolders or "tokenizer" in subfolders:
        check_text_encoder(root)
    return root


def check_safetensors(path: Path) -> None:
    """A safetensors file whose header covers the whole file (a truncated download fails here)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            if not list(handle.keys()):
                raise InputError(f"{path}: holds no tensors")
    except SafetensorError as exc:
        raise InputError(f"{path}: not a complete safetensors file ({exc}); download it again") from None


def check_text_encoder(root: Path) -> None:
    """SD's CLIP tokenizer and text-encoder config, read by the installed transformers as
    ``models.empty_prompt_embedding`` reads them."""
    if importlib.util.find_spec("transformers") is None:
        raise InputError(
            "the empty-prompt embedding of SD-1.5 needs the 'transformers' package (CLIP text encoder), "
            "pinned in requirements.txt: pip install -r requirements.txt"
        )
    from transformers import CLIPTextConfig, CLIPTokenizer

    for sub, reader in (("tokenizer", CLIPTokenizer), ("text_encoder", CLIPTextConfig)):
        try:
            reader.from_pretrained(root, subfolder=sub, local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"{root / sub}: transformers cannot read it as SD-1.5's CLIP {sub} ({str(exc).splitlines()[0]})") from None


# ---------------------------------------------------------------------------------------------
# Checkpoints read with torch.load: MedSAM, VGG16


def check_state_dict(path: Path, expected: Mapping[str, Any], what: str) -> None:
    """``path`` holds exactly the tensor names and shapes of ``expected`` (what a strict
    ``load_state_dict`` of that model needs); read with ``weights_only=True``."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # noqa: BLE001 - torch.load's errors on a damaged file are of many types (IndexError too)
        raise InputError(f"{path}: not a readable {what} checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, Mapping):
        raise InputError(f"{path}: not a {what} state dict (a {type(state).__name__})")
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or reshaped:
        parts = [f"{len(names)} {kind} (first: {names[0]})" for kind, names in
                 (("missing", missing), ("unexpected", unexpected), ("with other shapes", reshaped)) if names]
        raise InputError(f"{path}: not a {what} state dict: tensors " + ", ".join(parts))


def check_medsam(path: Path) -> Path:
    """The MedSAM checkpoint: present, with exactly SAM ViT-B's tensors (what ``load_medsam`` loads)."""
    if not path.is_file():
        raise InputError(f"MedSAM checkpoint not found at {path}: download medsam_vit_b.pth (MedSAM, Ma et al. 2024) and put it there")
    import torch
    from segment_anything import sam_model_registry

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        expected = sam_model_registry["vit_b"]().state_dict()
    check_state_dict(path, expected, "SAM ViT-B (MedSAM)")
    return path


def torch_hub_dir() -> Path:
    """torch's hub cache as ``torch.hub.get_dir()`` finds it, without importing torch."""
    cache = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return Path(os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def vgg16_weights_path() -> Path:
    return torch_hub_dir() / "checkpoints" / VGG16_FILE


def check_vgg16(path: Path) -> Path:
    """torchvision's VGG16 state dict, as LPIPS-VGG loads it from the hub cache."""
    import torch
    import torchvision

    with torch.device("meta"):
        expected = torchvision.models.vgg16().state_dict()
    check_state_dict(path, expected, "torchvision VGG16")
    return path


# ---------------------------------------------------------------------------------------------
# Optional weights and the deviations they cause


def wants_perceptual(profile: Mapping[str, Any]) -> bool:
    """Whether any autoencoder of the profile has a perceptual term."""
    return any(profile.get(section, {}).get("perceptual_weight", 0) > 0 for section in PERCEPTUAL_SECTIONS)


def weight_deviations(profile: Mapping[str, Any]) -> list[str]:
    """The deviations from the profile's settings that absent optional weights cause, as labels
    free of machine-specific paths (they enter checksummed tables)."""
    if wants_perceptual(profile) and not vgg16_weights_path().is_file():
        return [f"deviation: {PERCEPTUAL_OFF}"]
    return []


def check_perceptual(profile: Mapping[str, Any]) -> str | None:
    """Start-up check of the optional VGG16: a present file must be loadable; an absent one is
    the profile's recorded deviation, returned for the start-up report."""
    if not wants_perceptual(profile):
        return None
    path = vgg16_weights_path()
    if not path.is_file():
        return f"deviation: {PERCEPTUAL_OFF}; looked for {path}"
    return f"VGG16 (perceptual term): {check_vgg16(path)}"
