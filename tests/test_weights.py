"""The paper profile's start-up checks against tiny weights built here (nothing is downloaded):
an SD-format folder saved by diffusers/transformers, a random SAM ViT-B state dict as MedSAM, a
VGG16 state dict of the right names and shapes. Required weights missing or unreadable stop the
run before any work, naming the file and where it goes; the optional VGG16 missing is a deviation
carried by every number's label."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from segment_anything import sam_model_registry

from iusdiff.data.splits import CASES
from iusdiff.errors import InputError
from iusdiff.evaluation.medsam import load_medsam
from iusdiff.generator.losses import perceptual_loss
from iusdiff.pipeline.config import load_profile, provenance
from iusdiff.pipeline.runner import Context, run_pipeline, startup_checks
from iusdiff.pipeline.stages import STAGES
from iusdiff.weights import VGG16_FILE, torch_hub_dir, weight_deviations

from helpers import REPO, run_script, sd_folder, tiny_sam, write_case


SD_DIR, MEDSAM_FILE = "stable-diffusion-v1-5", "medsam_vit_b.pth"  # the paper profile's settings


@dataclass(frozen=True)
class PaperInputs:
    data: Path  # RESECT/ and SEG/ with all 23 cases
    weights: Path  # the weights folder: SD-1.5 and MedSAM
    torch_home: Path  # hub/checkpoints/ holds VGG16

    def context(self, tmp_path: Path, weights: Path | None = None) -> Context:
        return Context(profile=load_profile("paper"), out=tmp_path / "out", repo=REPO, resect_root=str(self.data / "RESECT"),
                       seg_root=str(self.data / "SEG"), weights=weights or self.weights)


def fake_vgg16() -> dict[str, torch.Tensor]:
    """torchvision VGG16's tensor names and shapes as zero-stride zeros: a 10 kB file that a
    strict load_state_dict accepts (the check reads names and shapes, not values)."""
    with torch.device("meta"):
        shapes = torchvision.models.vgg16().state_dict()
    return {name: torch.zeros((), dtype=t.dtype).expand(t.shape) for name, t in shapes.items()}


@pytest.fixture(scope="module")
def paper_inputs(tmp_path_factory) -> PaperInputs:
    root = tmp_path_factory.mktemp("paper_inputs")
    rng = np.random.default_rng(0)
    for case in CASES:
        mask = np.zeros((8, 8, 8), np.uint8)
        mask[2:5, 2:5, 3:5] = 1
        write_case(root / "data", case, rng.integers(0, 256, (8, 8, 8), dtype=np.uint8), mask)
    sd_folder(root / "weights" / SD_DIR, with_text=True)
    torch.manual_seed(0)
    medsam = {name: t.half() for name, t in sam_model_registry["vit_b"]().state_dict().items()}  # random ViT-B, half size
    torch.save(medsam, root / "weights" / MEDSAM_FILE)
    checkpoints = root / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(fake_vgg16(), checkpoints / VGG16_FILE)
    return PaperInputs(root / "data", root / "weights", root / "torch")


def test_paper_startup_check_passes_with_tiny_weights_in_the_project_venv(paper_inputs, tmp_path):
    """run_all.sh's own start-up check, in a subprocess of the project's venv (in CI: built from
    the pins on a clean clone), so a dependency the checks need and the pins lack fails here."""
    result = run_script(
        "run_all.sh", "--profile", "paper", "--check", "--out", tmp_path / "out", "--weights", paper_inputs.weights,
        "--resect-root", paper_inputs.data / "RESECT", "--seg-root", paper_inputs.data / "SEG",
        env={"TORCH_HOME": str(paper_inputs.torch_home)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (f"RESECT data: {len(CASES)} cases", f"Stable Diffusion 1.5: {paper_inputs.weights / SD_DIR}",
                 f"MedSAM ViT-B: {paper_inputs.weights / MEDSAM_FILE}", "VGG16 (perceptual term):", "start-up checks passed"):
        assert line in result.stdout, result.stdout
    assert "deviation" not in result.stdout and not (tmp_path / "out").exists()


def weights_without(paper_inputs: PaperInputs, tmp_path: Path, missing: str) -> Path:
    """A weights folder holding the paper's weights except ``missing``."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in (SD_DIR, MEDSAM_FILE):
        if name != missing:
            (folder / name).symlink_to(paper_inputs.weights / name)
    return folder


@pytest.mark.parametrize("missing, named", [(SD_DIR, r"needs Stable Diffusion 1\.5.*Put the diffusers-format download"),
                                            (MEDSAM_FILE, r"needs MedSAM.*checkpoint not found at .*medsam_vit_b\.pth: download")])
def test_a_missing_required_weight_stops_the_run_before_any_work(paper_inputs, tmp_path, monkeypatch, missing, named):
    monkeypatch.setenv("TORCH_HOME", str(paper_inputs.torch_home))
    ctx = paper_inputs.context(tmp_path, weights_without(paper_inputs, tmp_path, missing))
    with pytest.raises(InputError, match=named) as error:
        run_pipeline(ctx, STAGES, fold=1)  # even a fold job, which never runs the evaluation itself
    assert str(tmp_path / "weights" / missing) in str(error.value) and not ctx.out.exists()


def test_an_unreadable_required_weight_is_named(paper_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(paper_inputs.torch_home))
    folder = weights_without(paper_inputs, tmp_path, MEDSAM_FILE)
    torch.save(tiny_sam().state_dict(), folder / MEDSAM_FILE)  # a SAM, but not ViT-B
    with pytest.raises(InputError, match=r"medsam_vit_b\.pth: not a SAM ViT-B \(MedSAM\) state dict: tensors .* with other shapes"):
        startup_checks(paper_inputs.context(tmp_path, folder), STAGES)
    (folder / MEDSAM_FILE).write_bytes(b"truncated download")
    with pytest.raises(InputError, match=r"medsam_vit_b\.pth: not a readable SAM ViT-B \(MedSAM\) checkpoint"):
        startup_checks(paper_inputs.context(tmp_path, folder), STAGES)


def test_missing_vgg16_is_a_recorded_deviation_in_every_label(paper_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    profile = load_profile("paper")
    assert profile["deviations"] == weight_deviations(profile) and len(profile["deviations"]) == 1
    label = provenance(profile)
    assert "deviation: perceptual (LPIPS) term off" in label and VGG16_FILE in label and str(tmp_path) not in label
    lines = startup_checks(paper_inputs.context(tmp_path), STAGES)  # no error: the run may go on without it
    assert any(line.startswith("deviation: perceptual") and str(tmp_path / "empty") in line for line in lines)
    monkeypatch.setenv("TORCH_HOME", str(paper_inputs.torch_home))
    assert load_profile("paper")["deviations"] == [] and "deviation" not in provenance(load_profile("paper"))


def test_the_deviation_reaches_a_table_written_by_a_stage(smoke_data, tmp_path):
    result = run_script("make_table1.py", "--slices", smoke_data / "slices", "--out-dir", tmp_path, "--profile", "smoke",
                        cwd=tmp_path, env={"TORCH_HOME": str(tmp_path / "empty")})
    assert result.returncode == 0, result.stderr
    assert "deviation: perceptual (LPIPS) term off" in (tmp_path / "table1.md").read_text()


def test_the_stage_code_loads_what_the_startup_check_accepts(paper_inputs, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(paper_inputs.torch_home))
    perceptual, note = perceptual_loss(1.0)  # LPIPS-VGG through torchvision's own loader
    assert perceptual is not None and note.startswith("perceptual (LPIPS-VGG) term on")
    model = load_medsam(paper_inputs.weights / MEDSAM_FILE)
    assert model.image_encoder.pos_embed.shape == (1, 64, 64, 768)  # ViT-B


@pytest.mark.parametrize("variables", [{"TORCH_HOME": "/x/torch"}, {"XDG_CACHE_HOME": "/x/cache"}, {}])
def test_torch_hub_dir_is_torchs_own(monkeypatch, variables):
    for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert torch_hub_dir() == Path(torch.hub.get_dir())
    if variables:
        assert str(torch_hub_dir()).startswith("/x/")
