"""The ControlNet baseline: phase A -> phase B hand-over, frozen UNet, resume, sampling contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import ControlNetModel
from safetensors.torch import load_file

import sample
import train_controlnet
from iusdiff.baselines.controlnet import CONTROLNET_DIR, ControlledUNet, ControlNetTask, build_controlnet
from iusdiff.errors import InputError
from iusdiff.generator.models import PromptedUNet, build_prompted_unet, noise_scheduler, zero_text_embedding
from iusdiff.generator.tasks import LdmTask, validation_latents
from iusdiff.generator.training import CHECKPOINTS, MODEL_DIR, make_accelerator, set_determinism
from iusdiff.io import load_png, save_png
from iusdiff.outputs.samples import Sample, write_manifest
from iusdiff.pipeline.config import load_profile
from iusdiff.pipeline.runner import Context, prepare_job
from iusdiff.pipeline.stages import STAGES

from helpers import (
    LDM_CFG,
    REPO,
    SIZE,
    InterruptAt,
    check_contract,
    fold_data,
    latent_source,
    run,
    tiny_slices,
    tiny_vae,
)


UNET_CFG = {
    "block_out_channels": [8, 8], "layers_per_block": 1, "attention": [False, True], "attention_head_dim": 4,
    "norm_num_groups": 4, "cross_attention_dim": 8,
}


def phase_a_task() -> LdmTask:
    acc, vae = make_accelerator("no"), tiny_vae()
    set_determinism(1)
    model = build_prompted_unet(UNET_CFG, SIZE // 4, 4, None, zero_text_embedding(1, 8))
    z, masks = validation_latents(vae, "image", fold_data(4, 1), acc.device)
    return LdmTask(model, latent_source(vae, acc), noise_scheduler(LDM_CFG), z, masks, LDM_CFG, acc, lambda m, f: m.save(f))


def phase_b_task(base: PromptedUNet | None = None) -> ControlNetTask:
    acc, vae = make_accelerator("no"), tiny_vae()
    set_determinism(2)
    base = base or build_prompted_unet(UNET_CFG, SIZE // 4, 4, None, zero_text_embedding(1, 8))
    model = ControlledUNet(base, build_controlnet(base.unet, (4, 4, 4), vae))
    z, masks = validation_latents(vae, "image", fold_data(4, 1), acc.device)
    save = lambda m, f: m.controlnet.save_pretrained(f / CONTROLNET_DIR)  # noqa: E731
    return ControlNetTask(model, latent_source(vae, acc), noise_scheduler(LDM_CFG), z, masks, LDM_CFG, acc, save)


def test_from_unet_copies_the_trained_phase_a_unet_and_phase_b_leaves_it_frozen(tmp_path):
    task_a = phase_a_task()
    run(task_a, tmp_path / "a")
    base = PromptedUNet.load(tmp_path / "a" / MODEL_DIR)
    fresh = build_prompted_unet(UNET_CFG, SIZE // 4, 4, None, zero_text_embedding(1, 8))
    assert any(not torch.equal(p, q) for p, q in zip(base.unet.parameters(), fresh.unet.parameters()))  # trained
    task_b = phase_b_task(base)
    controlnet = task_b.acc.unwrap_model(task_b.model).controlnet
    unet_state = {k: v.clone() for k, v in base.unet.state_dict().items()}
    for part in ("conv_in", "time_embedding", "down_blocks", "mid_block"):
        copied = getattr(controlnet, part).state_dict()
        assert copied and all(torch.equal(v, unet_state[f"{part}.{k}"]) for k, v in copied.items())
    before = {k: v.clone() for k, v in controlnet.state_dict().items()}
    task_b.train_step(0)
    assert all(torch.equal(v, unet_state[k]) for k, v in base.unet.state_dict().items())  # frozen
    assert not all(p.requires_grad for p in task_b.model.parameters())
    assert any(not torch.equal(v, before[k]) for k, v in controlnet.state_dict().items())  # trained
    assert set(task_b.modules()) == {"controlnet", "ema"}  # checkpoints hold no copy of the frozen UNet


def test_the_conditioning_embedding_must_reach_the_latent_resolution():
    unet = build_prompted_unet(UNET_CFG, SIZE // 4, 4, None, zero_text_embedding(1, 8)).unet
    with pytest.raises(InputError, match="the VAE needs 2"):
        build_controlnet(unet, (4, 4, 4, 4), tiny_vae())
    assert build_controlnet(unet, (4, 4, 4), tiny_vae()).config.conditioning_channels == 1


@pytest.mark.parametrize("make", [phase_a_task, phase_b_task], ids=["phase-a", "phase-b"])
def test_an_interrupted_phase_resumes_into_the_same_run(tmp_path, make):
    straight = run(make(), tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(InterruptAt(make(), 3), tmp_path / "resumed")
    assert [p.name for p in (tmp_path / "resumed" / CHECKPOINTS).iterdir()] == ["step-0000002"]
    resumed = run(make(), tmp_path / "resumed", resume=True)
    assert resumed.history == straight.history and resumed.validation == straight.validation
    for a, b in zip(sorted((tmp_path / "straight" / MODEL_DIR).rglob("*.safetensors")),
                    sorted((tmp_path / "resumed" / MODEL_DIR).rglob("*.safetensors"))):
        assert all(torch.equal(v, load_file(b)[k]) for k, v in load_file(a).items())


# ---------------------------------------------------------------------------------------------
# The scripts, in process, on a tiny slices folder with the smoke profile


def proposed_samples(root: Path, n: int) -> Path:
    """A proposed-model set for fold 1 (masks only matter here), 2 x n pairs."""
    data, samples = fold_data(2 * n, 9), []
    for index in range(2 * n):
        name = f"{index:05d}.png"
        save_png(root / "fold1" / "masks" / name, data.masks[index])
        save_png(root / "fold1" / "images" / name, data.images[index])
        samples.append(Sample(index, 1000 + index, f"masks/{name}", f"images/{name}", "ddim", 3, 3.0, 0))
    write_manifest(root / "fold1" / "manifest.csv", samples)
    return root


def test_train_controlnet_then_sample_controlnet_writes_the_contract(tmp_path, smoke_base):
    slices = tiny_slices(tmp_path / "slices")
    tiny_vae().save_pretrained(tmp_path / "vae_image" / "fold1" / MODEL_DIR)
    argv = ["--slices", slices, "--vae", tmp_path / "vae_image", "--out", tmp_path / "controlnet", "--profile", "smoke", "--steps", "2",
            "--pretrained", smoke_base]
    train_controlnet.main([str(a) for a in argv])
    fold = tmp_path / "controlnet" / "fold1"
    assert (fold / "options.json").is_file()
    assert ControlNetModel.from_pretrained(fold / "phase_b" / MODEL_DIR / CONTROLNET_DIR).config.conditioning_channels == 1
    masks = proposed_samples(tmp_path / "proposed", 6)
    argv = ["--model", "controlnet", "--slices", slices, "--image-vae", tmp_path / "vae_image",
            "--controlnet", tmp_path / "controlnet", "--masks", masks, "--out", tmp_path / "cn", "--profile", "smoke"]
    sample.main([str(a) for a in argv])
    rows = check_contract(tmp_path / "cn" / "fold1", 6, seeds=[1000 + i for i in range(6)])  # N = 6 training slices
    for row in rows:  # the proposed model's masks, in order
        assert np.array_equal(load_png(tmp_path / "cn" / "fold1" / row["mask"]), load_png(masks / "fold1" / row["mask"]))


def test_sample_names_the_folders_a_model_needs(capsys):
    with pytest.raises(SystemExit):
        sample.parse_args(["--model", "controlnet", "--slices", "s", "--out", "o", "--profile", "smoke", "--image-vae", "v"])
    assert "--model controlnet needs --controlnet, --masks" in capsys.readouterr().err


BASELINE_STAGES = ("vae_joint", "ldm_onestep", "sample_onestep", "controlnet", "sample_controlnet")


def test_baseline_stages_run_for_every_profile_and_the_paper_controlnet_starts_from_sd(tmp_path):
    stages = {s.name: s for s in STAGES}
    for profile in ("smoke", "default", "paper"):
        ctx = Context(profile=load_profile(profile), out=tmp_path, repo=REPO, resect_root="r", seg_root="s", weights=tmp_path / "weights")
        for name in BASELINE_STAGES:
            job = prepare_job(ctx, stages[name], {})
            argv = job.argv
            assert stages[name].per_fold and "--resume" in argv and argv[argv.index("--settings") + 1] == f"settings/{name}.json"
            assert job.settings["profile"]["name"] == profile and set(job.settings["sections"]) == set(stages[name].reads)
        base = str(tmp_path / "weights" / "stable-diffusion-v1-5") if profile == "paper" else "pretrain/base"
        for name in ("controlnet", "vae_joint", "ldm_onestep"):  # all three start from the profile's base
            argv = stages[name].args(ctx)
            assert argv[argv.index("--pretrained") + 1].endswith(base.split("/")[-1]) and "pretrain" in stages[name].deps
    assert set(stages["sample_controlnet"].deps) == {"slices", "controlnet", "vae_image", "sample"}
