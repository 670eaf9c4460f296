"""The package's shape: each subpackage imports only the top-level modules and the subpackages
before it (iusdiff/__init__.py lists them in that order), modules import each other without
cycles, and every import is absolute (the code digest of a stage reads them)."""

from __future__ import annotations

import ast
import graphlib

from helpers import REPO

PACKAGE = REPO / "code" / "iusdiff"
ORDER = ("outputs", "data", "generator", "baselines", "evaluation", "report", "pipeline")


def module_name(path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Module -> the iusdiff modules (or packages) it imports, anywhere in its source."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}:{node.lineno}: relative import"
                if node.module.split(".")[0] == "iusdiff":
                    targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "iusdiff"}
        graph[name] = targets - {name}
    return graph


def layer(module: str) -> int:
    """-1 for the package and its top-level modules, else the subpackage's place in ORDER."""
    parts = module.split(".")
    return ORDER.index(parts[1]) if len(parts) > 1 and parts[1] in ORDER else -1


def test_subpackages_import_only_the_ones_before_them():
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == set(ORDER)
    upward = sorted(f"{m} -> {t}" for m, targets in package_imports().items() for t in targets
                    if layer(t) > layer(m))
    assert not upward


def test_modules_import_each_other_without_cycles():
    graphlib.TopologicalSorter(package_imports()).prepare()  # raises CycleError naming the cycle
