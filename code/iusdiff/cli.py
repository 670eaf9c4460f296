"""Command-line plumbing shared by the scripts in ``code/``.

Each script builds an argparse parser, does its work through the package, and is run via
``run(main)``: input problems and operating-system trouble (a read-only or full disk) become
one ``error: ...`` line and exit status 2, never a traceback, and the resolved options are saved
next to the outputs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from iusdiff import __version__
from iusdiff.errors import InputError, Interrupted, describe_os_error
from iusdiff.io import write_json

# Set by the stage runner when it reruns a stage that was forced or one of whose files changed:
# the script may believe none of its own records of finished work (iusdiff.pipeline.runs.completed).
RECOMPUTE_ENV = "IUSDIFF_RECOMPUTE"


def recompute_requested() -> bool:
    """Whether the runner asked this stage to recompute what it would skip as finished."""
    return bool(os.environ.get(RECOMPUTE_ENV))


def parse_cases(text: str) -> list[int]:
    """'1,2,5-8' or '1 2 5' -> [1, 2, 5, 6, 7, 8]."""
    cases: list[int] = []
    for token in text.replace(",", " ").split():
        if "-" in token:
            low, high = token.split("-", 1)
            cases.extend(range(int(low), int(high) + 1))
        else:
            cases.append(int(token))
    return cases


def cases_argument(value: str) -> list[int]:
    try:
        return parse_cases(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid case list {value!r} (use e.g. '1,2,5-8')") from None


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


class LineProgress:
    """Progress for a log file: one line each time another tenth is done, and at the end, never a
    redraw (two stages' bars redrawing into ``make repro > log`` wrote megabytes). The subset of
    tqdm's interface the scripts use: iteration, ``update``, ``set_postfix``, ``close``."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str, initial: int = 0) -> None:
        self.iterable, self.desc, self.unit, self.n, self.postfix = iterable, desc, unit, initial, ""
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.started, self.start_n, self.shown = time.monotonic(), initial, self._tenth()

    def _tenth(self) -> int:
        return 10 * self.n // self.total if self.total else 0

    def _line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = f", {(self.n - self.start_n) / elapsed:.2f} {self.unit}/s" if elapsed > 0 and self.n > self.start_n else ""
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        return f"{self.desc}: {done} {self.unit}{rate}{self.postfix}"

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self._tenth() > self.shown:
            self.shown = self._tenth()
            print(self._line(), file=sys.stderr, flush=True)

    def set_postfix(self, values: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.postfix = "".join(f", {k}={v}" for k, v in {**(values or {}), **kwargs}.items())

    def close(self) -> None:
        if not self.total or self.shown < 10:
            print(self._line(), file=sys.stderr, flush=True)
            self.shown = 10

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, disable: bool = False, leave: bool = True) -> tqdm | LineProgress:
    """A progress bar on a terminal (tqdm), single lines at every tenth in a log."""
    if disable or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, leave=leave)
    return LineProgress(iterable, total, desc, unit, initial)


def options_record(args: argparse.Namespace, **extra) -> dict[str, Any]:
    """Exactly what a run was asked to do: its options, command line and version, and ``extra``.

    Nothing machine-specific goes in (no absolute script path, no interpreter version), so the
    file it is saved to is part of the checksummed outputs and identical wherever the same run
    happens.
    """
    options = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {"options": options, "argv": argv, "iusdiff_version": __version__, **extra}


def save_options(path: str | Path, args: argparse.Namespace, **extra) -> None:
    """Record what a run was asked to do (:func:`options_record`) in ``path``."""
    write_json(path, options_record(args, **extra))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def interrupt_on_signals() -> dict[int, Any]:
    """Make SIGTERM (``kill``, a batch system's time limit, the runner stopping a stage) and
    SIGHUP (a closed terminal) unwind like Ctrl-C, as Interrupted with the signal's number, so
    that ``finally`` blocks run: atomic writers remove their temporary files, the runner stops
    its stages before it releases their locks. Their default action ends the process on the
    spot. A signal the caller ignores (``nohup``, a background job's SIGINT) stays ignored, and
    a forked worker that inherits the handler does what it did before (dies quietly on SIGTERM).
    Returns the previous handlers."""
    owner = os.getpid()

    def interrupt(signum: int, frame) -> None:
        if os.getpid() != owner:
            signal.signal(signum, previous[signum])
            os.kill(os.getpid(), signum)
            return
        raise Interrupted(signum)

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, interrupt)
    return previous


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run a script's main(), turning InputError, and an operating system's error that no atomic
    writer named already (``<file>: <reason>``), into one clear line and exit status 2, and a
    stop signal into "interrupted" and 128 + its number."""
    previous = interrupt_on_signals()
    try:
        status = main(argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.errno is None:  # not the operating system's: a bug, keep its traceback
            raise
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print("interrupted", file=sys.stderr)
        sys.exit(128 + getattr(exc, "signum", signal.SIGINT))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    sys.exit(status or 0)
