"""Small I/O building blocks shared by every stage.

Every output is written atomically (temporary name in the same folder, then ``os.replace``)
so an interrupted run never leaves a half-written file that a later run could trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from iusdiff.errors import InputError, OutputError

_CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digests(folder: str | Path, names: Iterable[str]) -> dict[str, str]:
    """sha256 of each named file under ``folder`` (relative paths), to record beside them."""
    return {name: sha256_file(Path(folder) / name) for name in names}


def changed_files(folder: str | Path, digests: Mapping[str, str]) -> list[str]:
    """``missing: <name>`` or ``changed: <name>`` for each recorded file under ``folder`` that is
    gone or whose bytes differ from its recorded sha256, in name order; empty when all match."""
    problems = []
    for name, digest in sorted(digests.items()):
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f"missing: {name}")
        elif sha256_file(path) != digest:
            problems.append(f"changed: {name}")
    return problems


def read_record(path: str | Path) -> dict | None:
    """A JSON object from ``path``, or None when it is missing or not a readable JSON object
    (an interrupted or foreign record is no record)."""
    try:
        value = json.loads(Path(path).read_text())
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def visible_files(root: str | Path) -> list[str]:
    """Files under ``root`` as sorted relative POSIX paths, leaving out hidden ones and everything
    inside hidden folders: temporary work (``.name.xxx.tmp``) and what was set aside is no output."""
    root = Path(root)
    return sorted(
        rel.as_posix()
        for rel in (p.relative_to(root) for p in root.rglob("*") if p.is_file())
        if not any(part.startswith(".") for part in rel.parts)
    )


def _written_file(exc: OSError, target: Path) -> Path:
    """The file an OS error in an atomic write is about, as the user knows it: the target for a
    write() error (it names no file) or one on a temporary sibling (``.<name>.*``) or inside it."""
    if exc.filename is None:
        return target
    failed = Path(os.fsdecode(exc.filename))
    for folder in (failed, *failed.parents):
        if folder.parent == target.parent and folder.name.startswith(f".{target.name}."):
            return target / failed.relative_to(folder)
    return failed  # an input the block was reading, or a folder above the target


@contextlib.contextmanager
def _naming_os_errors(target: Path) -> Iterator[None]:
    """Turn an operating-system error (read-only file system, full disk, no permission) raised
    while writing ``target`` into an OutputError naming the file: a Python traceback ending in
    ``OSError: [Errno 28] No space left on device`` says neither which output nor where."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:  # not the operating system's (PIL's UnidentifiedImageError, ...)
            raise
        raise OutputError(f"{_written_file(exc, target)}: {os.strerror(exc.errno)}") from exc


def _normalise_modes(root: Path, umask: int) -> None:
    """Give ``root`` (a file, or a folder and everything in it) the modes of any other output:
    ``0o666 & ~umask`` for files, ``0o777 & ~umask`` for folders. mkstemp, mkdtemp and
    safetensors (hence every diffusers ``save_pretrained``) create theirs 0600/0700."""
    for entry in [root] if root.is_file() else [root, *root.rglob("*")]:
        if not entry.is_symlink():
            entry.chmod((0o777 if entry.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces ``path`` in one rename. An OS error
    on the way becomes an OutputError naming ``path``."""
    path = Path(path)
    with _naming_os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            _normalise_modes(tmp_path, _umask())  # after the block: a writer may have replaced the file
            os.replace(tmp_path, path)
        finally:
            tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Stable JSON (sorted keys, trailing newline) so identical content hashes identically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``path`` only if the block succeeds, with
    every file and folder in it at the usual modes. An OS error on the way becomes an
    OutputError naming the file below ``path``."""
    path = Path(path)
    with _naming_os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            yield tmp
            _normalise_modes(tmp, _umask())
            if path.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, trash / "old")
                os.replace(tmp, path)
                shutil.rmtree(trash)
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)


def writable_folder(path: Path) -> None:
    """Create ``path`` if needed and check that it takes a new file, so that a run into a
    read-only (or otherwise unwritable) folder fails at once, in one line, not at its first
    lock or output."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OutputError(f"{path}: cannot write to the output folder: {os.strerror(exc.errno)}") from exc


def save_png(path: str | Path, array: np.ndarray) -> None:
    """Write a 2-D uint8 array as an 8-bit grayscale PNG (deterministic bytes)."""
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D uint8 array, got {array.dtype} {array.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(array, mode="L").save(tmp, format="PNG", compress_level=6)


def load_png(path: str | Path) -> np.ndarray:
    """Read an 8-bit grayscale PNG as a 2-D uint8 array."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "P", "1"):
                image = image.convert("L")
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable PNG ({exc})") from None


def load_mask_png(path: str | Path) -> np.ndarray:
    """Read a mask PNG stored as {0,1} or {0,255} and return it as {0,1} uint8."""
    raw = load_png(path)
    values = np.unique(raw)
    if np.isin(values, (0, 1)).all():
        return raw
    if np.isin(values, (0, 255)).all():
        return (raw > 127).astype(np.uint8)
    raise InputError(f"{path}: mask values must be {{0,1}} or {{0,255}}, found {values[:8].tolist()}")
