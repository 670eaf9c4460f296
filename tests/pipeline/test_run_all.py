"""End to end: ./run_all.sh --profile smoke, as a user runs it."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from iusdiff.data.slices import load_dataset
from iusdiff.errors import InputError
from iusdiff.io import load_png
from iusdiff.pipeline.config import load_profile
from iusdiff.pipeline.runner import expand
from iusdiff.pipeline.stages import SAMPLES_DIR, STAGES

from helpers import blob_case, run_script, write_case


pytestmark = pytest.mark.e2e


def check_generated_pairs(out):
    """The two-step generator's output contract, for every fold of the smoke run."""
    dataset = load_dataset(out / "slices")
    samples = out / SAMPLES_DIR
    folds = load_profile("smoke")["folds"]
    assert sorted(p.name for p in samples.glob("fold*")) == [f"fold{k}" for k in folds]  # the profile's folds only
    for entry in (e for e in dataset.splits["folds"] if e["fold"] in folds):
        folder = samples / f"fold{entry['fold']}"
        rows = list(csv.DictReader((folder / "manifest.csv").read_text().splitlines()))
        assert list(rows[0]) == ["index", "seed", "mask", "image", "sampler", "steps", "w", "empty"]
        assert (folder / "options.json").is_file()
        assert len(rows) == 3 * len(dataset.select(entry["fold"], "train"))  # 3 x N: the downstream study's R = 3
        mask, image = load_png(folder / rows[0]["mask"]), load_png(folder / rows[0]["image"])
        assert set(np.unique(mask)) <= {0, 1} and image.shape == mask.shape == (64, 64)
        assert float(rows[0]["w"]) in (3.0, 5.0)  # picked on validation from the smoke grid
        assert (folder / "guidance.csv").read_text().startswith("w,kid")


def check_pretrained_base(out):
    """The base was pretrained once on the corpus, which shares no subject with the study, and
    every fold's models start from it."""
    corpus, study = load_dataset(out / "pretrain" / "corpus"), load_dataset(out / "slices")
    assert not {r.subject for r in corpus.records} & {r.subject for r in study.records}
    base = out / "pretrain" / "base"
    assert {p.name for p in base.iterdir()} >= {"vae", "unet", "vae_mask", "unet_mask", "base.json", "base_mask.json"}
    recorded = [set(json.loads((out / ".stages" / f"{name}.json").read_text())["files"]) for name in ("pretrain", "pretrain_mask")]
    on_disk = {p.relative_to(out).as_posix() for p in base.rglob("*") if p.is_file()}
    assert not recorded[0] & recorded[1] and recorded[0] | recorded[1] == on_disk  # two stages, disjoint parts, nothing unrecorded
    for model in ("vae_image", "vae_mask", "ldm_mask", "ldm_ius", "vae_joint", "ldm_onestep"):
        options = json.loads((out / "models" / model / "fold1" / "options.json").read_text())
        assert options["options"]["pretrained"] == "pretrain/base", model


def check_settings_route(out):
    """Each stage was handed its sections in settings/<stage>.json; a changed Pix2Pix key makes
    only the Pix2Pix stages and their dependents stale; a typo fails before any work."""
    handed = json.loads((out / "settings" / "pix2pix.json").read_text())
    assert set(handed["sections"]) == {"pix2pix"} and handed["profile"]["name"] == "smoke"
    assert json.loads((out / "run.json").read_text())["overrides"] == []
    plan = run_script("run_all.sh", "--profile", "smoke", "--out", out, "--plan", "--set", "pix2pix.ngf=4")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    stale = {line.split()[0] for line in plan.stdout.splitlines() if "  runs: " in line}
    bases = {name.split("@")[0] for name in stale}
    assert bases == {"pix2pix", "sample_pix2pix", "evaluate_images", "figures", "report"}, plan.stdout
    assert any(line.startswith("pix2pix@fold1 ") and "its settings changed" in line for line in plan.stdout.splitlines())
    typo = run_script("run_all.sh", "--profile", "smoke", "--out", out, "--set", "ldm_mask.no_such_key=1")
    assert typo.returncode == 2 and "[ldm_mask] has no key 'no_such_key'" in typo.stderr and "running:" not in typo.stdout
    shown = run_script("run_all.sh", "--profile", "smoke", "--show-settings", "--set", "pix2pix.ngf=4")
    assert any(line.startswith("pix2pix.ngf") and "= 4" in line and "# --set" in line for line in shown.stdout.splitlines())


def test_smoke_profile_end_to_end_rerun_and_verify(smoke_run, tmp_path):
    out = smoke_run
    for rel in ("slices/slices.csv", "slices/splits.json", "tables/table1.md", "tables/table1.tex", "tables/table1.csv", "figures/phantom_montage.png", "checksums.sha256", "run.json"):
        assert (out / rel).is_file(), rel
    assert "synthetic phantom data" in (out / "tables" / "table1.md").read_text()
    log = (out.parent / "smoke_run.log").read_text()  # progress as lines, not redraws: a log stays small
    assert "\r" not in log and len(log.encode()) < 200_000, len(log.encode())

    check_generated_pairs(out)
    check_pretrained_base(out)

    second = run_script("run_all.sh", "--profile", "smoke", "--out", out, "--cached-only")  # make tables/figures' route
    assert second.returncode == 0
    assert "running:" not in second.stdout and "0 stage(s) ran" in second.stdout
    assert second.stdout.count("files match their checksums") == second.stdout.count("up to date (")
    check_settings_route(out)

    assert run_script("run_all.sh", "--profile", "smoke", "--out", out, "--verify").returncode == 0
    manifest = (out / "checksums.sha256").read_text()
    target = next(line.split("  ", 1)[1] for line in manifest.splitlines() if line.endswith(".nii.gz"))
    original = (out / target).read_bytes()
    (out / target).write_bytes(b"corrupted")
    failed = run_script("run_all.sh", "--profile", "smoke", "--out", out, "--verify")
    (out / target).write_bytes(original)  # the run is shared with other tests
    assert failed.returncode == 1 and f"changed: {target}" in failed.stdout

    other = check_fold_job(out, tmp_path / "fold_job")
    check_tampered_outputs_are_restored(other)


def without_fold_work(out, copy, fold):
    """A copy of a finished run without one fold's stage instances (records and outputs): the
    state a cluster's job for that fold starts from once the shared stages have run."""
    shutil.copytree(out, copy, symlinks=True)
    by_name = {stage.name: stage for stage in expand(STAGES, load_profile("smoke")["folds"])}
    for record in (copy / ".stages").glob(f"*@fold{fold}.json"):
        for output in by_name[record.stem].outputs:
            shutil.rmtree(copy / output)
        record.unlink()
    return copy


def check_fold_job(out, other):
    """Scale-out: fold 2 as a job of its own in another folder (as on a cluster) runs exactly that
    fold's stage instances, and their checksums equal the single-process run's; a final full run
    there finds nothing to do (the merge). Concurrent fold jobs sharing the shared stages under a
    lock are tested on a toy pipeline in test_runner.py."""
    other = without_fold_work(out, other, 2)
    cached = run_script("run_all.sh", "--profile", "smoke", "--out", other, "--cached-only")
    assert cached.returncode == 2 and "beyond tables and figures would run, first 'vae_image@fold2'" in cached.stderr, cached.stderr
    assert "running:" not in cached.stdout
    job = run_script("run_all.sh", "--profile", "smoke", "--out", other, "--fold", 2, "--jobs", 2)
    assert job.returncode == 0, job.stdout + job.stderr
    ran = {line.split()[1] for line in job.stdout.splitlines() if "  running: " in line}
    assert {"sample@fold2", "sample_pix2pix@fold2", "controlnet@fold2"} <= ran and all(name.endswith("@fold2") for name in ran)
    for name in ran:
        assert json.loads((other / ".stages" / f"{name}.json").read_text())["files"] == \
            json.loads((out / ".stages" / f"{name}.json").read_text())["files"], name
    merge = run_script("run_all.sh", "--profile", "smoke", "--out", other)
    assert merge.returncode == 0 and "0 stage(s) ran" in merge.stdout, merge.stdout + merge.stderr
    assert (other / "checksums.sha256").read_text() == (out / "checksums.sha256").read_text()
    return other


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[-200 if len(data) > 200 else -1] ^= 1
    path.write_bytes(bytes(data))


def check_tampered_outputs_are_restored(out):
    """One changed file of each kind (model weights, a sample, a prediction, a slice, a metric CSV,
    an nnU-Net model): --verify names each, a plain rerun restores the clean manifest exactly,
    --verify passes."""
    clean = (out / "checksums.sha256").read_text()
    tampered = {
        "models/vae_image/fold1/model/diffusion_pytorch_model.safetensors": flip_byte,
        "samples/proposed/fold1/images/00000.png": flip_byte,
        next(p.relative_to(out).as_posix() for p in sorted((out / "downstream" / "predictions").rglob("*.png"))):
            lambda path: path.write_bytes(b"\0" * path.stat().st_size),
        next(p.relative_to(out).as_posix() for p in sorted((out / "slices" / "images").glob("*.png"))): flip_byte,
        "metrics/masks/fold1.csv": lambda path: path.write_text(path.read_text().replace("0.", "1.", 1)),
        "downstream/models/fold1_R1/model.safetensors": flip_byte,  # an nnU-Net of the downstream study
    }
    for rel, tamper in tampered.items():
        tamper(out / rel)
    verify = run_script("run_all.sh", "--profile", "smoke", "--out", out, "--verify")
    assert verify.returncode == 1 and all(f"changed: {rel}" in verify.stdout for rel in tampered), verify.stdout
    rerun = run_script("run_all.sh", "--profile", "smoke", "--out", out)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert (out / "checksums.sha256").read_text() == clean
    assert run_script("run_all.sh", "--profile", "smoke", "--out", out, "--verify").returncode == 0


def test_paper_profile_without_data_fails_before_any_work(tmp_path):
    out = tmp_path / "paper"
    result = run_script("run_all.sh", "--profile", "paper", "--out", out, "--resect-root", tmp_path / "nope", "--seg-root", tmp_path / "nope2")
    assert result.returncode == 2
    assert "needs RESECT data" in result.stderr and "data/RESECT" in result.stderr
    assert not out.exists()


def test_check_opens_every_data_file_and_names_an_empty_one(tmp_path):
    us, mask = blob_case()
    _, mask_file = write_case(tmp_path, 1, us, mask)
    mask_file.write_bytes(b"")  # existed, so the check passed it before it read headers
    out = tmp_path / "paper"
    result = run_script("run_all.sh", "--profile", "paper", "--check", "--out", out, "--resect-root", tmp_path / "RESECT",
                        "--seg-root", tmp_path / "SEG")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: Case1: cannot read tumour mask {mask_file}: Empty file: '{mask_file}'"]
    assert not out.exists()


def test_unknown_profile_is_an_input_error():
    with pytest.raises(InputError, match="unknown profile 'fast'"):
        load_profile("fast")
    result = run_script("run_all.sh", "--profile", "fast")
    assert result.returncode == 2 and "invalid choice" in result.stderr
