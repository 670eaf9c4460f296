"""The exception types behind the scripts' one-line errors and exit statuses.

Scripts catch them at the top level (iusdiff.cli.run) and print the message as a single line,
so a user sees which case or file is wrong and why, never a traceback.
"""

from __future__ import annotations

import os
import signal


class InputError(Exception):
    """Bad or missing input data, options or weights; the message names the culprit."""


class OutputError(InputError):
    """An output could not be written (read-only file system, full disk, no permission); the
    message names the file the user knows (never a temporary name) and the operating system's
    reason."""


def describe_os_error(exc: OSError) -> str:
    """``<file>: <reason>`` for an operating-system error (just the reason when it names no file,
    as a failed write() does)."""
    reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
    return reason if exc.filename is None else f"{os.fsdecode(exc.filename)}: {reason}"


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) reached a script (iusdiff.cli.interrupt_on_signals):
    it unwinds like Ctrl-C and exits with status 128 + ``signum``. ``stopped``: how many running
    stages the runner stopped on its way out."""

    def __init__(self, signum: int, stopped: int = 0) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.stopped = signum, stopped
