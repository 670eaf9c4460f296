"""The stage runner: skip when checksums match, rerun on change, verify, fail cleanly."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest

from iusdiff.errors import InputError
from iusdiff.pipeline.runner import MANIFEST, Context, StageFailed, load_record, plan_pipeline, read_manifest, run_pipeline, verify
from iusdiff.pipeline.runner import Stage as PipelineStage

from helpers import REPO, read_only

# Toy scripts take their settings as flags; the settings file route is tested on its own below.
Stage = functools.partial(PipelineStage, takes_settings=False)

TOY = """
import pathlib, sys
out, text = pathlib.Path(sys.argv[1]), sys.argv[2]
if text == "fail":
    sys.exit(3)
if len(sys.argv) > 3:
    text += pathlib.Path(sys.argv[3]).read_text()
out.mkdir(parents=True, exist_ok=True)
(out / "data.txt").write_text(text)
with open("runs.log", "a") as log:
    log.write(out.name + "\\n")
"""


@pytest.fixture
def toy(tmp_path: Path):
    script = tmp_path / "toy.py"
    script.write_text(TOY)
    out = tmp_path / "out"

    def stages(value: str = "x") -> list[Stage]:
        return [
            Stage("a", str(script), ("a",), lambda ctx: ["a", value]),
            Stage("b", str(script), ("b",), lambda ctx: ["b", "B", "a/data.txt"], deps=("a",)),
        ]

    def run(value: str = "x", **kwargs):
        ctx = Context(profile={"name": "toy"}, out=out, repo=REPO, resect_root="", seg_root="")
        return run_pipeline(ctx, stages(value), log=lambda line: None, **kwargs)

    def runs() -> list[str]:
        log = out / "runs.log"
        return log.read_text().split() if log.exists() else []

    return out, run, runs


def test_second_run_skips_everything_and_manifest_is_sha256sum_compatible(toy):
    out, run, runs = toy
    assert run().ran == ["a", "b"]
    assert run().skipped == ["a", "b"]
    assert runs() == ["a", "b"]
    assert set(read_manifest(out / MANIFEST)) == {"a/data.txt", "b/data.txt"}
    check = subprocess.run(["sha256sum", "-c", MANIFEST], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_edited_output_is_reported_by_verify_and_rebuilt_by_a_rerun(toy):
    out, run, runs = toy
    run()
    (out / "a" / "data.txt").write_text("tampered")
    assert verify(out) == ["changed: a/data.txt"]
    summary = run()
    assert summary.ran == ["a"] and summary.skipped == ["b"]  # a's rebuilt output equals the old one
    assert verify(out) == []
    (out / "b" / "data.txt").unlink()
    assert verify(out) == ["missing: b/data.txt"]


def test_a_finished_run_on_a_read_only_folder_can_be_verified_planned_and_listed(toy, capsys):
    import run_all

    out, run, runs = toy
    run()
    with read_only(out):
        assert verify(out) == []
        for option in ("--verify", "--plan", "--list"):
            assert run_all.main(["--profile", "smoke", "--out", str(out), option]) == 0, option
    assert "verify: " + str(out / MANIFEST) + ": all files match" in capsys.readouterr().out


def test_a_run_into_a_read_only_folder_fails_at_once_in_one_line(toy, capsys):
    import run_all

    from iusdiff.cli import run as run_script_main

    out, run, runs = toy
    run()
    with read_only(out), pytest.raises(SystemExit) as failed:
        run_script_main(run_all.main, ["--profile", "smoke", "--out", str(out), "--stage", "phantom"])
    assert failed.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {out}: cannot write to the output folder: Read-only file system"]


@pytest.mark.parametrize("jobs", ["0", "-3", "two"])
def test_jobs_must_be_a_positive_integer(jobs, capsys):
    import run_all

    with pytest.raises(SystemExit) as refused:
        run_all.parse_args(["--jobs", jobs])
    assert refused.value.code == 2
    assert f"argument --jobs: expected a positive integer, got '{jobs}'" in capsys.readouterr().err
    assert run_all.parse_args(["--jobs", "3"]).jobs == 3


def test_changed_option_reruns_the_stage_and_its_dependents(toy):
    out, run, runs = toy
    run("x")
    assert run("y").ran == ["a", "b"]
    assert (out / "b" / "data.txt").read_text() == "By"


SETTINGS_TOY = """
import json, pathlib, sys
settings = json.loads(pathlib.Path(sys.argv[sys.argv.index("--settings") + 1]).read_text())
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "data.txt").write_text(json.dumps(settings["sections"]))
with open("runs.log", "a") as log:
    log.write(out.name + "\\n")
"""


def test_a_changed_setting_reruns_the_stages_that_read_its_section_and_their_dependents(tmp_path):
    """Each stage is handed only the sections it reads, and only those enter its fingerprint."""
    script = tmp_path / "toy.py"
    script.write_text(SETTINGS_TOY)
    out = tmp_path / "out"
    stages = [
        PipelineStage("a", str(script), ("a",), lambda ctx: ["a"], reads=("train",)),
        PipelineStage("b", str(script), ("b",), lambda ctx: ["b"], reads=("other",)),
        PipelineStage("c", str(script), ("c",), lambda ctx: ["c"], deps=("a",)),
    ]

    def context(steps: int, other: int = 0) -> Context:
        return Context(profile={"name": "toy", "train": {"steps": steps}, "other": {"n": other}}, out=out, repo=tmp_path,
                       resect_root="", seg_root="")

    assert run_pipeline(context(10), stages, log=lambda line: None).ran == ["a", "b", "c"]
    assert (out / "a" / "data.txt").read_text() == '{"train": {"steps": 10}}'
    assert plan_pipeline(context(20), stages, folds=()) == [("a", "its settings changed"), ("b", None), ("c", "its input 'a' reruns")]
    assert run_pipeline(context(20), stages, log=lambda line: None).ran == ["a", "c"]
    assert run_pipeline(context(20, other=1), stages, log=lambda line: None).ran == ["b"]
    assert plan_pipeline(context(20, other=1), stages, folds=()) == [("a", None), ("b", None), ("c", None)]


def test_force_reruns_a_finished_stage(toy):
    out, run, runs = toy
    run()
    assert run(force=["b"]).ran == ["b"]
    with pytest.raises(InputError, match="no stage named nope"):
        run(force=["nope"])


SKIPPING = """
import argparse, pathlib, sys
from iusdiff.pipeline.runs import completed, save_completion
out = pathlib.Path(sys.argv[1])
if not completed(out, "key"):  # a training or sampling script's skip of a finished fold
    out.mkdir(exist_ok=True)
    (out / "data.txt").write_text("clean")
    with open("computed.log", "a") as log:
        log.write("computed\\n")
    save_completion(out, argparse.Namespace(out=str(out)), "key")
"""


def test_a_script_that_skips_finished_work_recomputes_what_changed_and_what_was_forced(tmp_path):
    import json

    from iusdiff.io import sha256_file

    script = tmp_path / "skipping.py"
    script.write_text(SKIPPING)
    ctx = Context(profile={"name": "toy"}, out=tmp_path / "out", repo=REPO, resect_root="", seg_root="")
    data, options = ctx.out / "fold1" / "data.txt", ctx.out / "fold1" / "options.json"

    def run(**kwargs) -> list[str]:
        run_pipeline(ctx, [Stage("s", str(script), ("fold1",), lambda ctx: ["fold1"])], log=lambda line: None, **kwargs)
        assert verify(ctx.out) == [] and data.read_text() == "clean"
        return (ctx.out / "computed.log").read_text().split()

    assert len(run()) == 1 and len(run()) == 1  # the second run finds the stage up to date
    data.write_text("tampered")
    assert len(run()) == 2  # the script's record no longer matches the file: recomputed
    data.write_text("evil")  # a consistent forgery: the script's own record updated too
    record = json.loads(options.read_text())
    options.write_text(json.dumps({**record, "outputs": {"data.txt": sha256_file(data)}}))
    assert len(run()) == 3  # the runner saw the changed files and asked for recomputation
    assert len(run(force=["s"])) == 4


def test_failed_stage_keeps_finished_ones_and_records_nothing_for_itself(toy):
    out, run, runs = toy
    run("x")
    with pytest.raises(StageFailed) as failure:
        run("fail")
    assert failure.value.stage == "a" and failure.value.code == 3
    assert load_record(out, "a")["argv"] == ["a", "x"]  # the old, complete record survives
    assert run("x").skipped == ["a", "b"]


def test_preflight_failure_happens_before_any_work(tmp_path):
    def refuse(ctx):
        raise InputError("weights missing: put them in weights/")

    out = tmp_path / "out"
    stages = [Stage("a", "unused.py", ("a",), lambda ctx: [], preflight=refuse)]
    ctx = Context(profile={"name": "toy"}, out=out, repo=tmp_path, resect_root="", seg_root="")
    with pytest.raises(InputError, match="weights missing"):
        run_pipeline(ctx, stages, log=lambda line: None)
    assert not out.exists()


def test_code_digest_follows_imports_transitively(tmp_path):
    from iusdiff.pipeline.digests import code_digest

    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "core.py").write_text("VALUE = 1\n")
    (package / "helper.py").write_text("from pkg.core import VALUE\n")
    (package / "unrelated.py").write_text("X = 0\n")
    script = tmp_path / "script.py"
    script.write_text("def main():\n    from pkg import helper\n")
    before = code_digest(script, package)
    (package / "unrelated.py").write_text("X = 1\n")
    assert code_digest(script, package) == before
    (package / "core.py").write_text("VALUE = 2\n")  # imported via helper
    assert code_digest(script, package) != before


@pytest.mark.parametrize("statement", ["from pkg.sub.leaf import VALUE", "from pkg.sub import leaf", "import pkg.sub.leaf",
                                       "from pkg.sub import via_relative"])
def test_code_digest_follows_subpackages_and_their_init_files(tmp_path, statement):
    from iusdiff.pipeline.digests import code_digest

    package, files = tmp_path / "pkg", {
        "__init__.py": "", "sub/__init__.py": "", "sub/leaf.py": "from pkg.other.deep import DEEP\nVALUE = 1\n",
        "sub/via_relative.py": "from .leaf import VALUE\nfrom ..other import deep\n", "other/__init__.py": "",
        "other/deep.py": "DEEP = 1\n", "other/unrelated.py": "X = 0\n",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    script = tmp_path / "script.py"
    script.write_text(statement + "\n")
    before = code_digest(script, package)
    (package / "other" / "unrelated.py").write_text("X = 1\n")
    assert code_digest(script, package) == before
    for name in ("__init__.py", "sub/__init__.py", "sub/leaf.py", "other/__init__.py", "other/deep.py"):
        (package / name).write_text((package / name).read_text() + "# edited\n")  # each runs on the import
        assert code_digest(script, package) != before, name
        before = code_digest(script, package)


def test_volatile_outputs_are_written_but_not_checksummed(tmp_path):
    script = tmp_path / "timed.py"
    script.write_text("import pathlib, time\npathlib.Path('r').mkdir(exist_ok=True)\npathlib.Path('r/data.txt').write_text('x')\npathlib.Path('took.txt').write_text(str(time.time()))\n")
    out = tmp_path / "out"
    stages = [Stage("r", str(script), ("r",), lambda ctx: [], volatile=("took.txt",))]
    ctx = Context(profile={"name": "toy"}, out=out, repo=tmp_path, resect_root="", seg_root="")
    run_pipeline(ctx, stages, log=lambda line: None)
    assert (out / "took.txt").is_file()
    assert set(read_manifest(out / MANIFEST)) == {"r/data.txt"}
    (out / "took.txt").write_text("edited")
    assert run_pipeline(ctx, stages, log=lambda line: None).skipped == ["r"]


FOLD_TOY = """
import pathlib, sys
args = sys.argv[1:]
fold = args[args.index("--folds") + 1] if "--folds" in args else None
name = args[0]
out = pathlib.Path(name if fold is None else f"{name}/fold{fold}")
out.mkdir(parents=True, exist_ok=True)
pattern = args[1].replace("{fold}", str(fold)) if len(args) > 1 and args[1] != "--folds" else None
inputs = sorted(str(p) + ":" + p.read_text() for p in pathlib.Path(".").glob(pattern)) if pattern else []
(out / "data.txt").write_text(name + str(fold) + "|".join(inputs))
"""


def fold_stages(script: Path) -> list[Stage]:
    return [
        Stage("data", str(script), ("data",), lambda ctx: ["data"]),
        Stage("train", str(script), ("train/fold{fold}",), lambda ctx: ["train", "data/data.txt"], deps=("data",), per_fold=True),
        Stage("sample", str(script), ("sample/fold{fold}",), lambda ctx: ["sample", "train/fold{fold}/data.txt"], deps=("train",), per_fold=True),
        Stage("tables", str(script), ("tables",), lambda ctx: ["tables", "sample/fold*/data.txt"], deps=("sample",)),
    ]


def _run_fold(out: str, script: str, fold) -> None:
    ctx = Context(profile={"name": "toy"}, out=Path(out), repo=Path(script).parent, resect_root="", seg_root="")
    run_pipeline(ctx, fold_stages(Path(script)), log=lambda line: None, folds=(1, 2), fold=fold)


def test_per_fold_stages_expand_and_wire_to_their_own_fold(tmp_path):
    from iusdiff.pipeline.runner import expand

    stages = {s.name: s for s in expand(fold_stages(tmp_path / "x.py"), (1, 2))}
    assert list(stages) == ["data", "train@fold1", "train@fold2", "sample@fold1", "sample@fold2", "tables"]
    assert stages["sample@fold2"].deps == ("train@fold2",) and stages["sample@fold2"].outputs == ("sample/fold2",)
    assert stages["tables"].deps == ("sample@fold1", "sample@fold2")
    ctx = Context(profile={"name": "toy"}, out=tmp_path, repo=tmp_path, resect_root="", seg_root="")
    assert stages["train@fold2"].args(ctx) == ["train", "data/data.txt", "--folds", "2"]


def test_fold_jobs_in_parallel_processes_merge_to_the_single_process_manifest(tmp_path):
    import multiprocessing

    script = tmp_path / "toy.py"
    script.write_text(FOLD_TOY)
    _run_fold(str(tmp_path / "single"), str(script), None)
    split = tmp_path / "split"
    context = multiprocessing.get_context("spawn")
    jobs = [context.Process(target=_run_fold, args=(str(split), str(script), k)) for k in (1, 2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
        assert job.exitcode == 0
    assert not (split / "tables").exists()  # fold jobs leave the merge to the final run
    _run_fold(str(split), str(script), None)
    assert (split / MANIFEST).read_text() == (tmp_path / "single" / MANIFEST).read_text()


def test_concurrent_stages_give_the_sequential_manifest(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(FOLD_TOY)
    manifests = []
    for jobs in (1, 2):
        ctx = Context(profile={"name": "toy", "threads": 1}, out=tmp_path / f"jobs{jobs}", repo=tmp_path, resect_root="", seg_root="")
        summary = run_pipeline(ctx, fold_stages(script), log=lambda line: None, folds=(1, 2), jobs=jobs)
        assert sorted(summary.ran) == ["data", "sample@fold1", "sample@fold2", "tables", "train@fold1", "train@fold2"]
        manifests.append((ctx.out / MANIFEST).read_text())
    assert manifests[0] == manifests[1]


def test_ready_stages_start_in_order_and_a_failure_stops_new_work():
    from iusdiff.pipeline.runner import run_when_ready

    stages = [Stage(n, "x.py", (), lambda ctx: [], deps=d) for n, d in (("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c")))]
    order: list[str] = []
    run_when_ready(stages, lambda s: order.append(s.name), jobs=1)
    assert order == ["a", "b", "c", "d"]
    order.clear()
    run_when_ready(stages, lambda s: order.append(s.name), jobs=2)
    assert order[0] == "a" and order[-1] == "d" and set(order) == {"a", "b", "c", "d"}

    def fail_b(stage):
        if stage.name == "b":
            raise RuntimeError("b failed")
        order.append(stage.name)

    order.clear()
    with pytest.raises(RuntimeError, match="b failed"):
        run_when_ready(stages, fail_b, jobs=1)
    assert order == ["a"]  # nothing started after the failure


def test_pinned_threads_reach_the_stage_scripts(tmp_path):
    from iusdiff.pipeline.runner import script_env

    assert script_env(tmp_path, 1)["OMP_NUM_THREADS"] == "1" and script_env(tmp_path, 3)["MKL_NUM_THREADS"] == "3"


def test_the_runner_grants_its_jobs_to_a_stage_outside_its_arguments(tmp_path):
    script = tmp_path / "workers.py"
    script.write_text("import os, pathlib\npathlib.Path('w.txt').write_text(os.environ['IUSDIFF_WORKERS'])\n")
    fingerprints = []
    for jobs in (1, 2):
        ctx = Context(profile={"name": "toy"}, out=tmp_path / f"jobs{jobs}", repo=tmp_path, resect_root="", seg_root="")
        run_pipeline(ctx, [Stage("w", str(script), ("w.txt",), lambda ctx: [])], log=lambda line: None, jobs=jobs)
        assert (ctx.out / "w.txt").read_text() == str(jobs)
        fingerprints.append(load_record(ctx.out, "w")["fingerprint"])
    assert fingerprints[0] == fingerprints[1]


def test_single_stage_needs_its_inputs_first(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(FOLD_TOY)
    ctx = Context(profile={"name": "toy"}, out=tmp_path / "out", repo=tmp_path, resect_root="", seg_root="")
    with pytest.raises(InputError, match="needs 'data', which has not run"):
        run_pipeline(ctx, fold_stages(script), log=lambda line: None, folds=(1, 2), only="train")
    run_pipeline(ctx, fold_stages(script), log=lambda line: None, folds=(1, 2), only="data")
    assert run_pipeline(ctx, fold_stages(script), log=lambda line: None, folds=(1, 2), only="train").ran == ["train@fold1", "train@fold2"]
    with pytest.raises(InputError, match="no stage named 'nope'"):
        run_pipeline(ctx, fold_stages(script), log=lambda line: None, folds=(1, 2), only="nope")


def test_launcher_applies_to_distributed_stages_only(tmp_path):
    import sys

    from iusdiff.pipeline.runner import LAUNCHER_ENV, stage_command

    train = Stage("train", "train_ldm.py", ("m",), lambda ctx: [], distributed=True)
    table = Stage("table", "make_table1.py", ("t",), lambda ctx: [])
    env = {LAUNCHER_ENV: "accelerate launch --config_file cluster/accelerate_multigpu.yaml"}
    script = tmp_path / "s.py"
    assert stage_command(train, script, ["--x"], env) == ["accelerate", "launch", "--config_file", "cluster/accelerate_multigpu.yaml", str(script), "--x"]
    assert stage_command(table, script, [], env) == [sys.executable, str(script)]
    assert stage_command(train, script, [], {}) == [sys.executable, str(script)]


SLOW = """
import os, pathlib, signal, subprocess, sys, time
how = sys.argv[1]
helper = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                           "print(flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
helper.stdout.readline()  # it ignores SIGTERM from here on


def on_term(signum, frame):
    if how == "stubborn":
        return
    time.sleep(0.3)  # cleaning up
    pathlib.Path("cleaned").write_text("")
    sys.exit(1)


signal.signal(signal.SIGTERM, on_term)
pathlib.Path("pids.tmp").write_text(f"{os.getpid()} {helper.pid}")
os.replace("pids.tmp", "pids")
time.sleep(60)
"""

# What run_all.py does around run_pipeline, with a toy stage (run_all's stage table is fixed).
RUNNER = """
import functools, sys
from pathlib import Path
from iusdiff.cli import interrupt_on_signals
from iusdiff.errors import Interrupted
from iusdiff.pipeline import runner
from iusdiff.pipeline.stagehost import StageHost

runner.StageHost = functools.partial(StageHost, preload=("json",))
runner.STOP_GRACE_SECONDS = 1.0
script, how, out, stage_host = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "host"
ctx = runner.Context(profile={"name": "toy"}, out=out, repo=out.parent, resect_root="", seg_root="")
stages = [runner.Stage("slow", script, ("done.txt",), lambda ctx: [how], takes_settings=False)]
interrupt_on_signals()
try:
    runner.run_pipeline(ctx, stages, log=lambda line: None, stage_host=stage_host)
except Interrupted as exc:
    print(f"interrupted: stopped {exc.stopped} running stage(s)", file=sys.stderr)
    sys.exit(128 + exc.signum)
"""


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (an orphan's zombie may wait for a lazy init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("how, stage_host", [("cleans_up", False), ("stubborn", False), ("cleans_up", True)])
def test_sigterm_stops_the_running_stage_and_what_it_started_before_its_lock_is_released(tmp_path, how, stage_host):
    import fcntl
    import signal
    import sys
    import time

    from iusdiff.pipeline.runner import script_env

    (tmp_path / "slow.py").write_text(SLOW)
    (tmp_path / "runner.py").write_text(RUNNER)
    out = tmp_path / "out"
    command = [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "slow.py"), how, str(out), "host" if stage_host else "own"]
    process = subprocess.Popen(command, env=script_env(REPO), stderr=subprocess.PIPE, text=True)
    while not (out / "pids").exists():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.02)
    stage, helper = map(int, (out / "pids").read_text().split())
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and stderr.splitlines() == ["interrupted: stopped 1 running stage(s)"]
    assert (out / "cleaned").exists() == (how == "cleans_up")  # the runner waited for the stage's own clean-up
    assert not alive(stage)
    for _ in range(100):  # SIGKILL is sent before the runner leaves; its delivery takes a moment
        if not alive(helper):
            break
        time.sleep(0.02)
    assert not alive(helper)
    with open(out / ".stages" / ".slow.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
