"""A stage host: one process that imports torch and diffusers once and forks a child per stage.

Each stage script is a fresh ``python script.py`` in spirit: its own process, working directory,
environment, ``sys.argv`` and exit status, and the runner still reads its peak memory from
``wait4``. What it skips is ~3.5 s of imports (torch, diffusers, accelerate) per stage, which
over the ``default`` profile's 68 stages is ~4 CPU-minutes on this 2-core machine.

The host declines (and the runner starts plain subprocesses) when CUDA is available: a process
that has asked the CUDA driver anything must not fork children that use CUDA. It is also not
used for stages that run under a multi-process launcher.

Protocol, one JSON object per line on two pipes: the runner sends ``{"id", "script", "argv",
"cwd", "env"}``; the host answers ``{"ready", "cuda"}`` once after its imports, then
``{"id", "status", "maxrss_kib"}`` per finished stage (``status`` as ``subprocess`` reports it:
the exit code, or minus the signal number). ``{"stop": signum}`` from the runner (it was
interrupted) hands the signal to every running stage, each in its own process group so that
what it started gets it too, and refuses later requests; once a stage has ended, whatever it
left running in its group is killed before the stage is reaped.
"""

from __future__ import annotations

import builtins
import contextlib
import gc
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import types
from concurrent.futures import Future
from pathlib import Path

PRELOAD = ("numpy", "torch", "accelerate", "diffusers", "diffusers.models.autoencoders.autoencoder_kl",
           "diffusers.models.unets.unet_2d_condition", "diffusers.models.unets.unet_2d", "diffusers.schedulers")
POLL_SECONDS = 0.1


class HostUnavailable(RuntimeError):
    """The host could not start or declined; run stages as plain subprocesses."""


class StageHost:
    """The runner's side: start the host, send stages, wait for their exit status (thread-safe)."""

    def __init__(self, env: dict[str, str], preload: tuple[str, ...] = PRELOAD) -> None:
        requests_read, self._requests = os.pipe()
        self._replies, replies_write = os.pipe()
        command = [sys.executable, "-c", "import sys; from iusdiff.pipeline.stagehost import serve; sys.exit(serve())",
                   str(requests_read), str(replies_write), *preload]
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, pass_fds=(requests_read, replies_write))
        os.close(requests_read)
        os.close(replies_write)
        self._writer = os.fdopen(self._requests, "w", buffering=1)
        self._reader = os.fdopen(self._replies, "r")
        self._lock, self._next_id, self._gone = threading.Lock(), 0, False
        self._hello: Future[dict | None] = Future()
        self._pending: dict[int, Future[dict | None]] = {}
        self._thread = threading.Thread(target=self._read_replies, daemon=True)
        self._thread.start()
        hello = self._hello.result()
        if hello is None or hello["cuda"]:
            self.close()
            raise HostUnavailable("CUDA is available" if hello else f"the stage host exited ({self.process.returncode})")

    def _read_replies(self) -> None:
        for line in self._reader:
            reply = json.loads(line)
            if "ready" in reply:
                self._hello.set_result(reply)
                continue
            with self._lock:
                self._pending.pop(reply["id"]).set_result(reply)
        with self._lock:  # the host is gone: release whoever still waits
            self._gone = True
            if not self._hello.done():
                self._hello.set_result(None)
            for future in self._pending.values():
                future.set_result(None)
            self._pending.clear()

    def run(self, script: Path, argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, int]:
        """Run ``script argv`` in a forked child; (exit status, peak resident KiB), or (-1, 0) when
        the host is gone."""
        future: Future[dict | None] = Future()
        with self._lock:
            if self._gone:
                return -1, 0
            request_id, self._next_id = self._next_id, self._next_id + 1
            self._pending[request_id] = future
            try:
                self._writer.write(json.dumps({"id": request_id, "script": str(script), "argv": argv, "cwd": str(cwd), "env": env}) + "\n")
            except BrokenPipeError:
                self._pending.pop(request_id)
                return -1, 0
        reply = future.result()
        return (-1, 0) if reply is None else (reply["status"], reply["maxrss_kib"])

    def stop(self, signum: int) -> None:
        """Hand ``signum`` to every stage the host is running; it starts none after this."""
        with self._lock:
            if not self._gone:
                with contextlib.suppress(BrokenPipeError, ValueError):  # gone, or closed already
                    self._writer.write(json.dumps({"stop": signum}) + "\n")

    def close(self) -> None:
        """Stop the host (closing its request pipe ends it once its children have finished)."""
        self._writer.close()
        self.process.wait()
        self._thread.join()
        self._reader.close()


def _child(request: dict, requests: int, reply, interrupt) -> int:
    """Become the stage: what ``python script argv`` in ``cwd`` with ``env`` would have been. An
    exception or ``sys.exit`` leaves through the interpreter, which reports it as Python would."""
    os.setpgid(0, 0)  # its own process group, which a stop signal reaches as a whole
    signal.signal(signal.SIGINT, interrupt)
    os.close(requests)
    reply.close()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    script = request["script"]
    sys.argv = [script, *request["argv"]]
    sys.path[0] = str(Path(script).resolve().parent)
    # The script becomes __main__ for good (runpy's is temporary), and __mp_main__ too (the alias
    # multiprocessing made of the host's __main__ when torch imported it): spawned worker
    # processes find the script through __main__.__file__, and what they return is unpickled
    # against __mp_main__.
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = script, builtins
    sys.modules["__main__"] = sys.modules["__mp_main__"] = main
    exec(compile(Path(script).read_bytes(), script, "exec"), main.__dict__)
    return 0


def serve() -> int:
    """The host's loop (``sys.argv``: request fd, reply fd, modules to import). In a forked child
    it returns the stage's exit status, so the child ends through normal interpreter shutdown."""
    requests, replies = int(sys.argv[1]), int(sys.argv[2])
    # Ctrl-C reaches the runner and the stages; the host itself ends when the runner closes its
    # pipe after the stages have stopped. Stages get the handler a fresh Python would have had.
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in sys.argv[3:]:
        importlib.import_module(module)
    import torch

    # What the imports built is never collected again: a child's garbage collections, and the
    # final one at its exit, then skip those objects instead of touching (so copying) every page
    # of them, which cost each stage ~2 s (0.6 s frozen; smoke forks ~100 stages).
    gc.collect()
    gc.freeze()

    reply = os.fdopen(replies, "w", buffering=1)
    reply.write(json.dumps({"ready": True, "cuda": torch.cuda.is_available()}) + "\n")
    pending, buffer, open_requests, stopping = {}, b"", True, None
    while open_requests or pending:
        readable, _, _ = select.select([requests] if open_requests else [], [], [], POLL_SECONDS)
        if readable:
            chunk = os.read(requests, 1 << 16)
            open_requests = bool(chunk)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                if "stop" in request:
                    stopping = request["stop"]
                    _signal_groups(pending, stopping)
                elif stopping is not None:
                    reply.write(json.dumps({"id": request["id"], "status": -stopping, "maxrss_kib": 0}) + "\n")
                else:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        return _child(request, requests, reply, interrupt)
                    with contextlib.suppress(OSError):  # the child does it too; whichever comes first
                        os.setpgid(pid, pid)
                    pending[pid] = request["id"]
        while pending:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if ended is None:
                break
            if stopping is not None:  # unreaped, its group id is still its own
                _signal_groups([ended.si_pid], signal.SIGKILL)
            pid, wait_status, usage = os.wait4(ended.si_pid, 0)
            reply.write(json.dumps({"id": pending.pop(pid), "status": os.waitstatus_to_exitcode(wait_status), "maxrss_kib": usage.ru_maxrss}) + "\n")
    return 0


def _signal_groups(leaders, signum: int) -> None:
    """Send ``signum`` to the process group of each stage in ``leaders`` (it and what it started)."""
    for pid in leaders:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)
