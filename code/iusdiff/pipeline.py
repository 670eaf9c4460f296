"""The stage runner behind ``run_all.sh``: run each stage's script, checksum what it wrote,
skip stages whose outputs still match, and re-check everything on ``--verify``.

A stage is one script in ``code/`` with arguments derived from the profile. Scripts run with
the output folder as working directory and relative paths, so outputs (and the options files
they record) do not depend on where the folder lives, and two runs in different folders give
the same ``checksums.sha256``.

State per stage sits in ``OUT/.stages/<name>.json``: a fingerprint of what the stage was asked
to do (its arguments, the source of its script and of every ``iusdiff`` module the script
imports, the checksums of the stages it reads) and the sha256 of every file it wrote. Editing
the plotting code therefore reruns the figure stages, not the trainings. A stage is up to date when the fingerprint is unchanged and every file
still has its recorded hash. ``OUT/checksums.sha256`` (``sha256sum -c`` format, paths relative
to OUT) is rebuilt from those records after every stage.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iusdiff.errors import InputError
from iusdiff.io import sha256_file, write_json, write_text

MANIFEST = "checksums.sha256"
STATE_DIR = ".stages"


@dataclass(frozen=True)
class Context:
    """Everything a stage's arguments may depend on."""

    profile: dict[str, Any]
    out: Path
    repo: Path
    resect_root: str
    seg_root: str


@dataclass(frozen=True)
class Stage:
    """One pipeline step: a script, its arguments and the paths (relative to OUT) it owns."""

    name: str
    script: str
    outputs: tuple[str, ...]
    args: Callable[[Context], list[str]]
    deps: tuple[str, ...] = ()
    # Outputs that legitimately differ between identical runs (wall times, device names): written
    # by the stage but kept out of the checksum manifest and of the up-to-date check.
    volatile: tuple[str, ...] = ()
    enabled: Callable[[Context], bool] = field(default=lambda ctx: True)
    preflight: Callable[[Context], None] | None = None


class StageFailed(RuntimeError):
    def __init__(self, stage: str, code: int):
        super().__init__(f"stage '{stage}' failed with exit status {code}")
        self.stage, self.code = stage, code


# ---------------------------------------------------------------------------------------------
# Checksums


def output_files(out: Path, outputs: Sequence[str]) -> list[str]:
    """Every file under the stage's outputs, relative to OUT, sorted; temp files excluded."""
    files = []
    for entry in outputs:
        path = out / entry
        if path.is_file():
            files.append(entry)
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not child.name.startswith("."):
                    files.append(child.relative_to(out).as_posix())
    return sorted(files)


def hash_files(out: Path, files: Sequence[str]) -> dict[str, str]:
    return {rel: sha256_file(out / rel) for rel in files}


def changed_files(out: Path, recorded: dict[str, str]) -> list[str]:
    """Files whose content no longer matches ``recorded`` (missing ones included)."""
    problems = []
    for rel, digest in sorted(recorded.items()):
        path = out / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
        elif sha256_file(path) != digest:
            problems.append(f"changed: {rel}")
    return problems


def read_manifest(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise InputError(f"{path}: no checksum manifest (run the pipeline first)")
    entries = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise InputError(f"{path}:{number}: not a sha256sum line")
        entries[rel] = digest
    return entries


def write_manifest(out: Path, records: Sequence[dict[str, Any]]) -> int:
    entries = {rel: digest for record in records for rel, digest in record["files"].items()}
    write_text(out / MANIFEST, "".join(f"{entries[rel]}  {rel}\n" for rel in sorted(entries)))
    return len(entries)


def verify(out: Path) -> list[str]:
    """Re-hash every file in OUT's manifest; return one line per changed or missing file."""
    return changed_files(out, read_manifest(out / MANIFEST))


# ---------------------------------------------------------------------------------------------
# Stage state


def _record_path(out: Path, name: str) -> Path:
    return out / STATE_DIR / f"{name}.json"


def load_record(out: Path, name: str) -> dict[str, Any] | None:
    path = _record_path(out, name)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def files_digest(record: dict[str, Any]) -> str:
    text = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(record["files"].items()))
    return hashlib.sha256(text.encode()).hexdigest()


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


def script_path(stage: Stage, repo: Path) -> Path:
    script = Path(stage.script)
    return script if script.is_absolute() else repo / "code" / script


def fingerprint(stage: Stage, argv: list[str], dep_records: dict[str, dict[str, Any]], code: str) -> str:
    payload = {
        "stage": stage.name,
        "code": code,
        "argv": argv,
        "deps": {name: files_digest(record) for name, record in sorted(dep_records.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Running


def script_env(repo: Path) -> dict[str, str]:
    """Environment for stage scripts: the package importable, deterministic hashing and plots."""
    env = dict(os.environ)
    code = str(repo / "code")
    env["PYTHONPATH"] = code + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("SOURCE_DATE_EPOCH", "0")
    return env


def run_stage(stage: Stage, ctx: Context, argv: list[str]) -> None:
    script = script_path(stage, ctx.repo)
    result = subprocess.run([sys.executable, str(script), *argv], cwd=ctx.out, env=script_env(ctx.repo))
    if result.returncode != 0:
        raise StageFailed(stage.name, result.returncode)


@dataclass
class Summary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: int = 0


def run_pipeline(
    ctx: Context,
    stages: Sequence[Stage],
    force: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Summary:
    """Run the enabled stages in order; check every stage's inputs before any work starts."""
    selected = [s for s in stages if s.enabled(ctx)]
    unknown = set(force) - {s.name for s in selected}
    if unknown:
        raise InputError(f"--force: no stage named {', '.join(sorted(unknown))} in this profile")
    for stage in selected:
        if stage.preflight:
            stage.preflight(ctx)
    ctx.out.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    summary = Summary()
    width = max(len(s.name) for s in selected)
    enabled = {s.name for s in selected}
    for index, stage in enumerate(selected, 1):
        deps = [d for d in stage.deps if d in enabled]  # a disabled dependency (phantom on real data) is no input
        late = [d for d in deps if d not in records]
        if late:
            raise ValueError(f"stage '{stage.name}' is listed before its dependencies {late}")
        argv = [str(a) for a in stage.args(ctx)]
        print_prefix = f"[{index}/{len(selected)}] {stage.name:<{width}}"
        code = code_digest(script_path(stage, ctx.repo), ctx.repo / "code" / "iusdiff")
        fp = fingerprint(stage, argv, {d: records[d] for d in deps}, code)
        record = load_record(ctx.out, stage.name)
        if (
            stage.name not in force
            and record is not None
            and record.get("fingerprint") == fp
            and not changed_files(ctx.out, record["files"])
        ):
            log(f"{print_prefix}  up to date ({len(record['files'])} files match their checksums)")
            records[stage.name] = record
            summary.skipped.append(stage.name)
            continue
        log(f"{print_prefix}  running: {stage.script} {' '.join(argv)}")
        started = time.monotonic()
        run_stage(stage, ctx, argv)
        seconds = time.monotonic() - started
        files = output_files(ctx.out, stage.outputs)
        absent = [o for o in (*stage.outputs, *stage.volatile) if not (ctx.out / o).exists()]
        if absent:
            raise InputError(f"stage '{stage.name}' finished without writing {absent}")
        record = {
            "stage": stage.name,
            "fingerprint": fp,
            "argv": argv,
            "seconds": round(seconds, 2),
            "files": hash_files(ctx.out, files),
        }
        write_json(_record_path(ctx.out, stage.name), record)
        records[stage.name] = record
        summary.files = write_manifest(ctx.out, list(records.values()))
        summary.ran.append(stage.name)
        summary.seconds[stage.name] = seconds
        log(f"{print_prefix}  done in {seconds:.1f} s ({len(files)} files)")
    summary.files = write_manifest(ctx.out, list(records.values()))
    return summary


def publish(out: Path, repo: Path, folders: Sequence[str] = ("tables", "figures")) -> list[Path]:
    """Copy OUT/tables and OUT/figures over the repository's committed ones."""
    copied = []
    for folder in folders:
        source = out / folder
        if not source.is_dir():
            continue
        for path in sorted(source.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                target = repo / folder / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.publish.tmp")
                shutil.copyfile(path, tmp)
                os.replace(tmp, target)
                copied.append(target)
    return copied
