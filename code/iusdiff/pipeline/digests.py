"""What code a script runs: its source and every module of its package it imports.

Kept apart from the stage runner so that the scripts' own run keys (iusdiff.pipeline.runs) do not
depend on the runner's source: editing the runner must not invalidate finished trainings.

Imports are read from the source (never executed), in every form: ``import pkg.a.b``,
``from pkg.a import b`` (``b`` a module or a name in ``pkg/a.py`` or ``pkg/a/__init__.py``) and
relative ones inside the package. Importing a module runs the ``__init__.py`` of every package
above it, so those count too.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def _absolute(node: ast.ImportFrom, source: Path, package_dir: Path) -> str | None:
    """The absolute module name of a ``from ... import`` (None: relative, outside the package)."""
    if node.level == 0:
        return node.module
    if not source.is_relative_to(package_dir):
        return None
    parts = source.relative_to(package_dir.parent).parent.parts
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _imported_package_modules(source: Path, package_dir: Path) -> set[str]:
    """Names of ``package`` modules a Python file imports (anywhere in it), and the names it
    imports from them (which may be submodules)."""
    package, modules = package_dir.name, set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, source, package_dir)
            if module and module.split(".")[0] == package:
                modules.add(module)
                modules.update(f"{module}.{alias.name}" for alias in node.names)
    return modules


def _module_file(name: str, package_dir: Path) -> Path | None:
    """``pkg/a/b.py`` or ``pkg/a/b/__init__.py`` for ``pkg.a.b``; None when neither exists."""
    folder = package_dir.joinpath(*name.split(".")[1:])
    for candidate in (folder.with_suffix(".py") if folder != package_dir else None, folder / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def code_digest(script: Path, package_dir: Path) -> str:
    """sha256 over a script and, transitively, every module of its package it imports, with the
    ``__init__.py`` of each package above them."""
    seen: dict[str, Path] = {}
    pending = [script]
    while pending:
        for name in _imported_package_modules(pending.pop(), package_dir):
            parts = name.split(".")
            for prefix in (".".join(parts[:depth]) for depth in range(1, len(parts) + 1)):
                candidate = None if prefix in seen else _module_file(prefix, package_dir)
                if candidate is not None:
                    seen[prefix] = candidate
                    pending.append(candidate)
    digest = hashlib.sha256(script.read_bytes())
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].read_bytes())
    return digest.hexdigest()
