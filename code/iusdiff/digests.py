"""What code a script runs: its source and every module of its package it imports.

Kept apart from the stage runner so that the scripts' own run keys (iusdiff.runs) do not
depend on the runner's source: editing the runner must not invalidate finished trainings.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def _imported_package_modules(source: Path, package: str) -> set[str]:
    """Names of ``package`` modules a Python file imports (anywhere in it)."""
    modules = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def code_digest(script: Path, package_dir: Path) -> str:
    """sha256 over a script and, transitively, every module of its package it imports."""
    package = package_dir.name
    seen: dict[str, Path] = {}
    pending = [script]
    while pending:
        for name in _imported_package_modules(pending.pop(), package):
            parts = name.split(".")[1:]
            candidate = package_dir.joinpath(*parts).with_suffix(".py") if parts else package_dir / "__init__.py"
            if name not in seen and candidate.is_file():
                seen[name] = candidate
                pending.append(candidate)
    digest = hashlib.sha256(script.read_bytes())
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].read_bytes())
    return digest.hexdigest()
