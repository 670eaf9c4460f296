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

import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from iusdiff.cli import RECOMPUTE_ENV
from iusdiff.errors import InputError, Interrupted
from iusdiff.io import changed_files, file_digests, read_record, visible_files, writable_folder, write_json, write_text
from iusdiff.outputs.layout import FIGURES_DIR, MANIFEST, STATE_DIR, TABLES_DIR, fold_name, settings_file
from iusdiff.pipeline.config import stage_settings, write_stage_settings
from iusdiff.pipeline.digests import code_digest
from iusdiff.pipeline.stagehost import HostUnavailable, StageHost
from iusdiff.pipeline.workers import WORKERS_ENV


@dataclass(frozen=True)
class Context:
    """Everything a stage's arguments may depend on."""

    profile: dict[str, Any]
    out: Path
    repo: Path
    resect_root: str
    seg_root: str
    weights: Path | None = None  # the profile's weights folder; None: weights/ in the repository


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
    # A start-up check of the inputs it needs: raises InputError, or says what it found (a line).
    preflight: Callable[[Context], str | None] | None = None
    # A per-fold stage runs once per fold as "<name>@fold<K>" with "--folds K" appended; "{fold}"
    # in its outputs is filled in. Folds can then run as separate jobs (run_all.sh --fold K).
    per_fold: bool = False
    fold: int | None = None
    # Training stages may run under a multi-process launcher: with IUSDIFF_LAUNCHER set (e.g.
    # "accelerate launch --config_file cluster/accelerate_multigpu.yaml") it replaces "python".
    distributed: bool = False
    # Whether the script imports torch. Those that do are forked from the stage host; the others
    # (numpy, scipy, matplotlib) start their own Python, so a run of only such stages, e.g.
    # ``--stage phantom``, never pays the host's ~8 s of imports for nothing.
    uses_torch: bool = True
    # The settings sections the stage reads (dotted, e.g. "pretrain.vae_image"). They, with the
    # profile's identity (config.STAGE_KEYS), are all of the settings in its fingerprint.
    reads: tuple[str, ...] = ()
    # Whether the script takes them as ``--settings settings/<stage>.json`` (else as flags).
    takes_settings: bool = True

    @property
    def base(self) -> str:
        return self.name.split("@", 1)[0]


class StageFailed(RuntimeError):
    def __init__(self, stage: str, code: int):
        super().__init__(f"stage '{stage}' failed with exit status {code}")
        self.stage, self.code = stage, code


# ---------------------------------------------------------------------------------------------
# Checksums


def output_files(out: Path, outputs: Sequence[str]) -> list[str]:
    """Every file under the stage's outputs, relative to OUT, sorted; hidden (temporary or
    set-aside) files and folders excluded."""
    files = []
    for entry in outputs:
        path = out / entry
        if path.is_file():
            files.append(entry)
        elif path.is_dir():
            files.extend(f"{entry}/{rel}" for rel in visible_files(path))
    return sorted(files)


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
    return read_record(_record_path(out, name))


def files_digest(record: dict[str, Any]) -> str:
    text = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(record["files"].items()))
    return hashlib.sha256(text.encode()).hexdigest()


def script_path(stage: Stage, repo: Path) -> Path:
    script = Path(stage.script)
    return script if script.is_absolute() else repo / "code" / script


def fingerprint(
    stage: Stage, argv: list[str], dep_records: dict[str, dict[str, Any]], code: str, settings: dict[str, Any]
) -> str:
    """What a stage's outputs depend on: its code, arguments, inputs and the settings it is
    handed (only the sections it reads: a changed Pix2Pix key reruns the Pix2Pix stages)."""
    payload = {
        "stage": stage.name,
        "code": code,
        "argv": argv,
        "deps": {name: files_digest(record) for name, record in sorted(dep_records.items())},
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Running


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def script_env(repo: Path, threads: int | None = None) -> dict[str, str]:
    """Environment for stage scripts: the package importable, deterministic hashing and plots,
    and, when the profile pins it, the CPU thread count (float reductions, hence trained
    weights, depend on it; a pinned count makes the checksums independent of the machine's)."""
    env = dict(os.environ)
    if threads is not None:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    code = str(repo / "code")
    env["PYTHONPATH"] = code + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("SOURCE_DATE_EPOCH", "0")
    return env


LAUNCHER_ENV = "IUSDIFF_LAUNCHER"


def stage_command(stage: Stage, script: Path, argv: list[str], environ: dict[str, str]) -> list[str]:
    """The command line of a stage: the launcher for distributed stages when one is set."""
    launcher = shlex.split(environ.get(LAUNCHER_ENV, "")) if stage.distributed else []
    return [*(launcher or [sys.executable]), str(script), *argv]


STOP_GRACE_SECONDS = 10.0  # after a stop signal, how long stages may clean up before SIGKILL


class StageGroups:
    """The stage subprocesses running now, each the leader of its own process group, so that a
    stop reaches a stage and whatever it started (spawned workers, a launcher's ranks) before the
    runner releases the stage's lock. A group is signalled only while its leader is unreaped, so
    its id cannot belong to anyone else yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leaders: set[int] = set()
        self._stopping: int | None = None

    def start(self, command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        """Start a stage in a process group of its own; none starts once the run is stopping."""
        with self._lock:
            if self._stopping is not None:
                raise Interrupted(self._stopping)
            process = subprocess.Popen(command, cwd=cwd, env=env, process_group=0)
            self._leaders.add(process.pid)
            return process

    def wait(self, pid: int) -> tuple[int, int]:
        """Wait for a stage to end; (exit status, peak resident KiB). When stopping, what it left
        running in its group is killed before it is reaped."""
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            self._leaders.discard(pid)
            if self._stopping is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        return os.waitstatus_to_exitcode(status), usage.ru_maxrss

    def stop(self, signum: int) -> None:
        """Hand ``signum`` to every running stage's group; no stage starts after this."""
        with self._lock:
            self._stopping = signum
            for pid in self._leaders:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signum)


def run_stage(stage: Stage, ctx: Context, argv: list[str], workers: int = 1, host: StageHost | None = None,
              groups: StageGroups | None = None, recompute: bool = False) -> float:
    """Run a stage's script, forked from ``host`` when given and no launcher is set, else as a
    subprocess (tracked in ``groups``, for a stop); returns its peak resident memory in MiB (for
    bench/stages.py).

    ``workers``: processes the stage may use for independent items (iusdiff.pipeline.workers);
    ``recompute``: the script may not skip work it finds finished (forced, or a file changed)."""
    env = script_env(ctx.repo, ctx.profile.get("threads") or None) | {WORKERS_ENV: str(max(1, workers))}
    env.pop(RECOMPUTE_ENV, None)  # never inherited from the runner's own environment
    if recompute:
        env[RECOMPUTE_ENV] = "1"
    script = script_path(stage, ctx.repo)
    command = stage_command(stage, script, argv, env)
    if host is not None and command[0] == sys.executable:
        code, maxrss_kib = host.run(script, argv, ctx.out, env)
    else:
        groups = groups or StageGroups()
        with groups.start(command, ctx.out, env) as process:
            code, maxrss_kib = groups.wait(process.pid)
    if code != 0:
        raise StageFailed(stage.name, code)
    return maxrss_kib / 1024  # Linux reports KiB


class LazyHost:
    """A run's stage host, started when the first stage has to run (a run with everything up to
    date, e.g. ``make tables``, never pays its ~3 s of imports); None where it is off or declined."""

    def __init__(self, ctx: Context, enabled: bool, log: Callable[[str], None]) -> None:
        self.env, self.enabled, self.log = script_env(ctx.repo, ctx.profile.get("threads") or None), enabled, log
        self.host: StageHost | None = None
        self.lock = threading.Lock()

    def get(self) -> StageHost | None:
        with self.lock:
            if self.enabled and self.host is None:
                try:
                    self.host = StageHost(self.env)
                except HostUnavailable as why:
                    self.log(f"stage host not used ({why}): every stage starts its own Python")
                    self.enabled = False
            return self.host

    def stop(self, signum: int) -> None:
        """Hand ``signum`` to the stages the host runs; no stage starts in it after this."""
        with self.lock:
            self.enabled = False
            if self.host is not None:
                self.host.stop(signum)

    def close(self) -> None:
        if self.host is not None:
            self.host.close()


@dataclass
class Summary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: int = 0


def _with_fold(args: Callable[[Context], list[str]], fold: int) -> Callable[[Context], list[str]]:
    return lambda ctx: [*args(ctx), "--folds", str(fold)]


def _instance(name: str, fold: int) -> str:
    """A per-fold stage's instance: ``<name>@fold{K}``."""
    return f"{name}@{fold_name(fold)}"


def expand(stages: Sequence[Stage], folds: Sequence[int]) -> list[Stage]:
    """Per-fold stages become one instance per fold, wired to the same fold of their inputs."""
    per_fold = {s.name for s in stages if s.per_fold}
    expanded = []
    for stage in stages:
        if not stage.per_fold:
            deps = tuple(d2 for d in stage.deps for d2 in ([_instance(d, k) for k in folds] if d in per_fold else [d]))
            expanded.append(replace(stage, deps=deps))
            continue
        for k in folds:
            expanded.append(
                replace(
                    stage,
                    name=_instance(stage.name, k),
                    outputs=tuple(o.format(fold=k) for o in stage.outputs),
                    volatile=tuple(v.format(fold=k) for v in stage.volatile),
                    args=_with_fold(stage.args, k),
                    deps=tuple(_instance(d, k) if d in per_fold else d for d in stage.deps),
                    per_fold=False,
                    fold=k,
                )
            )
    return expanded


def _depends_on_fold_work(stage: Stage, by_name: dict[str, Stage]) -> bool:
    return any(by_name[d].fold is not None or _depends_on_fold_work(by_name[d], by_name) for d in stage.deps if d in by_name)


def select(stages: Sequence[Stage], fold: int | None, only: str | None) -> list[Stage]:
    """The stages one invocation runs: everything, one fold's share, or one stage."""
    by_name = {s.name: s for s in stages}
    chosen = list(stages)
    if fold is not None:
        chosen = [s for s in chosen if s.fold == fold or (s.fold is None and not _depends_on_fold_work(s, by_name))]
    if only is not None:
        chosen = [s for s in chosen if s.base == only]
        if not chosen:
            raise InputError(f"--stage: no stage named {only!r} in this profile ({', '.join(dict.fromkeys(s.base for s in stages))})")
    return chosen


def run_when_ready(stages: Sequence[Stage], run_one: Callable[[Stage], None], jobs: int,
                   stop: Callable[[int], None] = lambda signum: None) -> None:
    """Run each stage once the stages it reads (among ``stages``) have finished, up to ``jobs``
    at a time, in list order among the ready ones (``jobs`` = 1: exactly the list order).

    After a failure nothing new starts; the first error is raised once every running stage has
    finished, so no output is left half-written. A stop signal stops the running stages
    (``stop``, see _stopping_on_interrupt).
    """
    names = {s.name for s in stages}
    pending, running, done = list(stages), {}, set()
    failure: BaseException | None = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, _stopping_on_interrupt(running, stop):
        while pending or running:
            for stage in list(pending) if failure is None else []:
                if len(running) >= max(1, jobs):
                    break
                if all(d in done or d not in names for d in stage.deps):
                    pending.remove(stage)
                    running[pool.submit(run_one, stage)] = stage
            if not running:
                break
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                stage = running.pop(future)
                if future.exception() is not None:
                    failure = failure or future.exception()
                else:
                    done.add(stage.name)
    if failure is not None:
        raise failure


@contextlib.contextmanager
def _stopping_on_interrupt(running: dict[concurrent.futures.Future, Stage], stop: Callable[[int], None]) -> Iterator[None]:
    """On a stop signal (KeyboardInterrupt, or Interrupted with its number): hand it to the
    running stages (``stop``), SIGKILL what is left after STOP_GRACE_SECONDS (at once on a second
    signal), and raise Interrupted once their threads have finished, so that each stage's lock is
    released only after its processes are gone."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, "signum", signal.SIGINT)
        stopped = [future for future in running if not future.done()]
        stop(signum)
        try:
            late = concurrent.futures.wait(stopped, timeout=STOP_GRACE_SECONDS).not_done
        except KeyboardInterrupt:
            late = set(stopped)
        if late:
            stop(signal.SIGKILL)
        concurrent.futures.wait(stopped)
        raise Interrupted(signum, stopped=len(stopped)) from None


@contextlib.contextmanager
def _locked(out: Path, name: str) -> Iterator[None]:
    """Serialise work on one stage across processes (fold jobs sharing an output folder)."""
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    with open(out / STATE_DIR / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Job:
    """A stage instance ready to run: its command line, the settings it is handed, its identity."""

    argv: list[str]
    settings: dict[str, Any]
    settings_file: str | None  # relative to OUT; None for stages that take their settings as flags
    settings_digest: str
    fingerprint: str


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def prepare_job(ctx: Context, stage: Stage, dep_records: dict[str, dict[str, Any]]) -> Job:
    """The stage's arguments, settings and fingerprint, given the records of the stages it reads."""
    settings = stage_settings(ctx.profile, stage.reads)
    handed = settings_file(stage.base) if stage.takes_settings else None  # OUT/settings/<stage>.json
    argv = [str(a) for a in stage.args(ctx)] + (["--settings", handed] if handed else [])
    code = code_digest(script_path(stage, ctx.repo), ctx.repo / "code" / "iusdiff")
    return Job(argv, settings, handed, _digest(settings), fingerprint(stage, argv, dep_records, code, settings))


def _up_to_date(ctx: Context, stage: Stage, fp: str, force: Sequence[str]) -> tuple[dict[str, Any] | None, bool]:
    """(the stage's record when it is up to date, else None; whether a rerun must recompute what
    its script would skip as finished: the stage was forced or one of its recorded files changed,
    so a script's own record of a finished fold can no longer be believed)."""
    if stage.name in force or stage.base in force:
        return None, True
    record = load_record(ctx.out, stage.name)
    if record is None:
        return None, False
    changed = bool(changed_files(ctx.out, record["files"]))
    return (record if record.get("fingerprint") == fp and not changed else None), changed


def _execute(ctx: Context, stage: Stage, job: Job, workers: int, host: StageHost | None, groups: StageGroups,
             recompute: bool) -> dict[str, Any]:
    started = time.monotonic()
    peak_mib = run_stage(stage, ctx, job.argv, workers, host, groups, recompute)
    seconds = time.monotonic() - started
    absent = [o for o in (*stage.outputs, *stage.volatile) if not (ctx.out / o).exists()]
    if absent:
        raise InputError(f"stage '{stage.name}' finished without writing {absent}")
    record = {
        "stage": stage.name,
        "fingerprint": job.fingerprint,
        "settings_digest": job.settings_digest,
        "argv": job.argv,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_mib, 1),
        "files": file_digests(ctx.out, output_files(ctx.out, stage.outputs)),
    }
    write_json(_record_path(ctx.out, stage.name), record)
    return record


def refresh_manifest(out: Path, stages: Sequence[Stage]) -> int:
    """Rebuild OUT's manifest from the records of every stage that has finished so far."""
    with _locked(out, "manifest"):
        records = [r for r in (load_record(out, s.name) for s in stages) if r is not None]
        return write_manifest(out, records)


def startup_checks(ctx: Context, stages: Sequence[Stage]) -> list[str]:
    """Run each distinct start-up check of the profile's enabled stages once, before any work;
    one line per check that found something. Every enabled stage counts, not only those this
    invocation runs: a fold job must not train for days towards an evaluation that cannot start."""
    checks = dict.fromkeys(s.preflight for s in stages if s.preflight is not None and s.enabled(ctx))
    return [line for check in checks if (line := check(ctx))]


def run_pipeline(
    ctx: Context,
    stages: Sequence[Stage],
    force: Sequence[str] = (),
    log: Callable[[str], None] = print,
    folds: Sequence[int] = (1, 2, 3, 4, 5),
    fold: int | None = None,
    only: str | None = None,
    jobs: int = 1,
    stage_host: bool = False,
) -> Summary:
    """Run the enabled stages in order; check the profile's inputs before any work starts.

    ``fold`` restricts the run to the shared stages before any per-fold work plus that fold's
    instances (a cluster job); ``only`` to one stage. Inputs outside the selection must have
    been produced already. A full run afterwards finds everything up to date and merges.
    ``jobs`` > 1 runs stages whose inputs are ready side by side (folds, independent models).
    ``stage_host``: fork the stages from one process that has imported torch (iusdiff.pipeline.stagehost).
    """
    enabled = expand([s for s in stages if s.enabled(ctx)], folds)
    names = {s.name for s in enabled}
    unknown = set(force) - names - {s.base for s in enabled}
    if unknown:
        raise InputError(f"--force: no stage named {', '.join(sorted(unknown))} in this profile")
    chosen = select(enabled, fold, only)
    startup_checks(ctx, enabled)
    writable_folder(ctx.out)
    records: dict[str, dict[str, Any]] = {}
    summary = Summary()
    width = max(len(s.name) for s in chosen)
    chosen_names = [s.name for s in chosen]
    position = {s.name: i for i, s in enumerate(chosen, 1)}

    def run_one(stage: Stage) -> None:
        deps = [d for d in stage.deps if d in names]  # a disabled dependency (phantom on real data) is no input
        for dep in deps:
            if dep not in records:
                if dep in chosen_names:
                    raise ValueError(f"stage '{stage.name}' is listed before its dependency '{dep}'")
                record = load_record(ctx.out, dep)
                if record is None:
                    raise InputError(f"stage '{stage.name}' needs '{dep}', which has not run in {ctx.out}; run it first")
                records[dep] = record
        job = prepare_job(ctx, stage, {d: records[d] for d in deps})
        prefix = f"[{position[stage.name]}/{len(chosen)}] {stage.name:<{width}}"
        with _locked(ctx.out, stage.name):
            record, recompute = _up_to_date(ctx, stage, job.fingerprint, force)
            if record is not None:
                log(f"{prefix}  up to date ({len(record['files'])} files match their checksums)")
                summary.skipped.append(stage.name)
            else:
                log(f"{prefix}  running: {stage.script} {' '.join(job.argv)}")
                if job.settings_file:
                    write_stage_settings(ctx.out / job.settings_file, job.settings)
                record = _execute(ctx, stage, job, jobs, host.get() if stage.uses_torch else None, groups, recompute)
                summary.ran.append(stage.name)
                summary.seconds[stage.name] = record["seconds"]
                log(f"{prefix}  done in {record['seconds']:.1f} s ({len(record['files'])} files)")
        records[stage.name] = record
        refresh_manifest(ctx.out, enabled)

    host, groups = LazyHost(ctx, stage_host, log), StageGroups()

    def stop(signum: int) -> None:
        groups.stop(signum)
        host.stop(signum)

    try:
        run_when_ready(chosen, run_one, jobs, stop)
    finally:
        host.close()
    summary.files = refresh_manifest(ctx.out, enabled)
    return summary


def _stale_reason(ctx: Context, stage: Stage, deps: list[str], stale: set[str], force: Sequence[str]) -> str | None:
    """Why a stage would run (None: it is up to date), given which of its inputs will rerun."""
    record = load_record(ctx.out, stage.name)
    if stage.name in force or stage.base in force:
        return "forced"
    if record is None:
        return "has not run"
    rerun = [d for d in deps if d in stale]
    if rerun:
        return f"its input '{rerun[0]}' reruns"
    dep_records = {d: load_record(ctx.out, d) for d in deps}
    if any(r is None for r in dep_records.values()):
        return "an input has not run"
    job = prepare_job(ctx, stage, dep_records)  # type: ignore[arg-type]
    if record.get("fingerprint") != job.fingerprint:
        return "its settings changed" if record.get("settings_digest") != job.settings_digest else "its code, arguments or inputs changed"
    problems = changed_files(ctx.out, record["files"])
    return f"{len(problems)} output file(s) changed or missing ({problems[0]})" if problems else None


def plan_pipeline(
    ctx: Context, stages: Sequence[Stage], folds: Sequence[int], fold: int | None = None, only: str | None = None,
    force: Sequence[str] = (),
) -> list[tuple[str, str | None]]:
    """What a run would do, without doing it: (stage, why it would run or None) for each stage
    the invocation selects. A stage whose input reruns is stale too."""
    enabled = expand([s for s in stages if s.enabled(ctx)], folds)
    names = {s.name for s in enabled}
    chosen = {s.name for s in select(enabled, fold, only)}
    stale: set[str] = set()
    rows = []
    for stage in enabled:
        reason = _stale_reason(ctx, stage, [d for d in stage.deps if d in names], stale, force)
        if reason is not None:
            stale.add(stage.name)
        if stage.name in chosen:
            rows.append((stage.name, reason))
    return rows


def publish(out: Path, repo: Path, folders: Sequence[str] = (TABLES_DIR, FIGURES_DIR)) -> list[Path]:
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
