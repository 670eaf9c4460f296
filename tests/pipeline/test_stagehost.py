"""The stage host: forked stages behave like ``python script argv`` started afresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from iusdiff.pipeline import runner
from iusdiff.pipeline.runner import MANIFEST, Context, Stage, StageFailed, run_pipeline, script_env
from iusdiff.pipeline.stagehost import HostUnavailable, StageHost
from iusdiff.pipeline.stages import STAGES

from helpers import REPO

REPORT = """
import json, os, pathlib, sys
import sibling
pathlib.Path("report.json").write_text(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "sibling": sibling.VALUE,
    "env": os.environ.get("TOY_VALUE"), "stale": os.environ.get("ONLY_IN_HOST"), "main": __name__}))
"""

ENDINGS = """
import os, signal, sys
how = sys.argv[1]
if how == "exit":
    sys.exit(3)
if how == "message":
    sys.exit("stopped on purpose")
if how == "raise":
    raise ValueError("broken on purpose")
if how == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""

WAIT_FOR = """
import pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text("here")
for _ in range(200):
    if pathlib.Path(sys.argv[2]).exists():
        sys.exit(0)
    time.sleep(0.05)
sys.exit(5)
"""


@pytest.fixture
def host():
    env = script_env(REPO) | {"ONLY_IN_HOST": "1"}
    host = StageHost(env, preload=("json",))
    yield host
    host.close()


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_a_forked_stage_sees_what_a_fresh_python_would(host, tmp_path):
    script = write(tmp_path / "code", "report.py", REPORT)
    write(tmp_path / "code", "sibling.py", "VALUE = 7\n")
    runs = {}
    for how in ("host", "subprocess"):
        cwd = tmp_path / how
        cwd.mkdir()
        env = script_env(REPO) | {"TOY_VALUE": how}
        if how == "host":
            status, maxrss_kib = host.run(script, ["a", "b"], cwd, env)
            assert maxrss_kib > 0
        else:
            status = subprocess.run([sys.executable, str(script), "a", "b"], cwd=cwd, env=env).returncode
        assert status == 0
        runs[how] = json.loads((cwd / "report.json").read_text())
    assert runs["host"] == runs["subprocess"] | {"cwd": str(tmp_path / "host"), "env": "host"}
    assert runs["host"]["stale"] is None and runs["host"]["main"] == "__main__" and runs["host"]["sibling"] == 7


def test_exit_status_and_errors_as_python_reports_them(capfd, tmp_path):
    script = write(tmp_path, "endings.py", ENDINGS)
    host = StageHost(script_env(REPO), preload=("json",))  # after capfd: the stages write to the host's stderr
    try:
        for how, status, message in (("exit", 3, ""), ("message", 1, "stopped on purpose"),
                                     ("raise", 1, "ValueError: broken on purpose"), ("kill", -9, ""), ("fine", 0, "")):
            assert host.run(script, [how], tmp_path, script_env(REPO))[0] == status, how
            assert message in capfd.readouterr().err, how
    finally:
        host.close()


def test_stages_run_side_by_side(host, tmp_path):
    script = write(tmp_path, "wait_for.py", WAIT_FOR)
    statuses = {}

    def run(name: str, other: str) -> None:
        statuses[name] = host.run(script, [name, other], tmp_path, script_env(REPO))[0]

    threads = [threading.Thread(target=run, args=pair) for pair in (("first", "second"), ("second", "first"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == {"first": 0, "second": 0}  # each waited for the other's file: both ran at once


def test_a_host_that_cannot_start_is_reported():
    with pytest.raises(HostUnavailable, match="exited"):
        StageHost(script_env(REPO), preload=("no_such_module_here",))


def test_pipeline_with_and_without_the_host_gives_the_same_manifest_and_failures(tmp_path):
    script = write(tmp_path, "toy.py", "import pathlib, sys\nimport torch\npathlib.Path(sys.argv[1]).mkdir()\n"
                   "pathlib.Path(sys.argv[1], 'x.txt').write_text(str(torch.ones(2).sum().item()))\nsys.exit(int(sys.argv[2]))\n")
    manifests = []
    for stage_host in (True, False):
        ctx = Context(profile={"name": "toy", "threads": 1}, out=tmp_path / str(stage_host), repo=tmp_path, resect_root="", seg_root="")
        stages = [Stage("a", str(script), ("a",), lambda ctx: ["a", "0"]), Stage("b", str(script), ("b",), lambda ctx: ["b", "0"])]
        assert sorted(run_pipeline(ctx, stages, log=lambda line: None, jobs=2, stage_host=stage_host).ran) == ["a", "b"]
        manifests.append((ctx.out / MANIFEST).read_text())
        with pytest.raises(StageFailed, match="'c' failed with exit status 4"):
            run_pipeline(ctx, [Stage("c", str(script), ("c",), lambda ctx: ["c", "4"])], log=lambda line: None, stage_host=stage_host)
    assert manifests[0] == manifests[1]


def test_torch_free_stages_start_their_own_python_and_the_host_only_when_needed(tmp_path, monkeypatch):
    script = write(tmp_path, "parent.py", "import os, pathlib, sys\npathlib.Path(sys.argv[1]).write_text(str(os.getppid()))\n")
    started = []

    def counting_host(env):
        started.append(env)
        return StageHost(env, preload=("json",))

    monkeypatch.setattr(runner, "StageHost", counting_host)
    ctx = Context(profile={"name": "toy", "threads": 1}, out=tmp_path / "out", repo=tmp_path, resect_root="", seg_root="")
    light = Stage("light", str(script), ("light.txt",), lambda ctx: ["light.txt"], uses_torch=False)
    heavy = Stage("heavy", str(script), ("heavy.txt",), lambda ctx: ["heavy.txt"], deps=("light",))
    run_pipeline(ctx, [light], log=lambda line: None, stage_host=True)
    assert not started and (ctx.out / "light.txt").read_text() == str(os.getpid())  # the runner's own child
    run_pipeline(ctx, [light, heavy], log=lambda line: None, stage_host=True)
    assert len(started) == 1 and (ctx.out / "heavy.txt").read_text() != str(os.getpid())  # forked by the host


def test_stages_declared_torch_free_import_no_torch():
    scripts = sorted({str(REPO / "code" / s.script) for s in STAGES if not s.uses_torch})
    check = ("import runpy, sys\nfor path in sys.argv[1:]:\n    runpy.run_path(path, run_name='imported')\n"
             "    assert 'torch' not in sys.modules, path\n")
    result = subprocess.run([sys.executable, "-c", check, *scripts], env=script_env(REPO), capture_output=True, text=True)
    assert len(scripts) >= 5 and result.returncode == 0, result.stderr


POOL = """
import concurrent.futures, multiprocessing, pathlib
from dataclasses import dataclass

@dataclass(frozen=True)
class Result:
    value: int

def square(x: int) -> Result:
    return Result(x * x)

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        results = list(pool.map(square, [1, 2, 3]))
    pathlib.Path("squares.txt").write_text(" ".join(str(r.value) for r in results))
"""


def test_a_stage_with_spawned_workers_returning_its_own_classes(host, tmp_path):
    script = write(tmp_path, "pool.py", POOL)
    assert host.run(script, [], tmp_path, script_env(REPO))[0] == 0
    assert (tmp_path / "squares.txt").read_text() == "1 4 9"


INTERRUPTIBLE = """
import os, pathlib, sys, time
pathlib.Path("pid").write_text(str(os.getpid()))
for _ in range(400):
    time.sleep(0.05)
    if pathlib.Path("stop").exists():
        sys.exit(0)
sys.exit(7)
"""


def run_and_signal(host: StageHost, script: Path, folder: Path, target: str) -> int:
    """Run the interruptible stage, send SIGINT to the host or the stage, let it stop; its status."""
    import os
    import signal
    import time

    for name in ("pid", "stop"):
        (folder / name).unlink(missing_ok=True)
    result = {}
    thread = threading.Thread(target=lambda: result.update(status=host.run(script, [], folder, script_env(REPO))[0]))
    thread.start()
    while not (folder / "pid").exists():
        time.sleep(0.05)
    os.kill(host.process.pid if target == "host" else int((folder / "pid").read_text()), signal.SIGINT)
    time.sleep(0.5)
    (folder / "stop").write_text("")
    thread.join()
    return result["status"]


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_reaches_the_stage_as_in_a_fresh_python_and_never_the_host(tmp_path, inherited):
    import signal

    script = write(tmp_path, "interruptible.py", INTERRUPTIBLE)
    # What the runner's own SIGINT disposition is decides what a fresh Python would do (an
    # ignored SIGINT stays ignored across exec, as for a background job in a script).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler if inherited == "default" else signal.SIG_IGN)
    try:
        host = StageHost(script_env(REPO), preload=("json",))
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert run_and_signal(host, script, tmp_path, "host") == 0  # the host ignored it, the stage finished
        assert run_and_signal(host, script, tmp_path, "stage") == (-signal.SIGINT if inherited == "default" else 0)
    finally:
        host.close()
