"""Where the paper profile's pretrained weights are, checked before any work starts.

No torch import here: the stage runner calls these checks at start-up, before any stage runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from iusdiff.errors import InputError

SD_SUBFOLDERS = ("vae", "unet", "text_encoder", "tokenizer")
TEXT_SUBFOLDERS = ("text_encoder", "tokenizer")
# The fixed text input a base records when it has no text encoder (the CPU profiles' base).
TEXT_FILE = "text_embedding.safetensors"


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
    """Fail before any work if a subfolder's config or weights are missing."""
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
    if "text_encoder" in subfolders and importlib.util.find_spec("transformers") is None:
        raise InputError(
            "the empty-prompt embedding of SD-1.5 needs the 'transformers' package (CLIP text encoder): "
            "pip install transformers"
        )
    return root
