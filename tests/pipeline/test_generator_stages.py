"""The generator's stages: wiring per profile, and the paper profile's weight check up front."""

from __future__ import annotations

import pytest

from iusdiff.errors import InputError
from iusdiff.pipeline.config import load_profile
from iusdiff.pipeline.runner import Context, prepare_job
from iusdiff.pipeline.stages import GENERATOR_STAGES, STAGES, check_pretrained_weights

from helpers import REPO, sd_folder


PRETRAIN_STAGES = ("corpus", "pretrain_vae_image", "pretrain_vae_mask", "pretrain_ldm_image", "pretrain_ldm_mask", "pretrain_mask", "pretrain")
BASE_GROUP = {"vae_image": "pretrain", "vae_mask": "pretrain_mask", "ldm_mask": "pretrain_mask", "ldm_ius": "pretrain"}


def context(profile: str, root) -> Context:
    """The repository's stages, with ``root`` as the output and weights folders' parent."""
    return Context(profile=load_profile(profile), out=root / "out", repo=REPO, resect_root="r", seg_root="s", weights=root / "weights")


def stage(name: str):
    return next(s for s in STAGES if s.name == name)


def test_every_generator_stage_runs_for_every_profile(tmp_path):
    for profile in ("smoke", "default", "paper"):
        ctx = context(profile, tmp_path)
        for name in GENERATOR_STAGES:
            assert stage(name).enabled(ctx)
            job = prepare_job(ctx, stage(name), {})
            assert "--resume" in job.argv and job.argv[job.argv.index("--settings") + 1] == f"settings/{name}.json"
            assert job.settings["profile"]["name"] == profile and set(job.settings["sections"]) == set(stage(name).reads)


def test_paper_profile_names_missing_sd_weights_before_any_work(tmp_path):
    with pytest.raises(InputError, match=r"needs Stable Diffusion 1\.5.*weights/stable-diffusion-v1-5"):
        check_pretrained_weights(context("paper", tmp_path))
    check_pretrained_weights(context("default", tmp_path))  # nothing pretrained: nothing to check


def test_paper_profile_passes_the_sd_folder_to_the_finetuned_models(tmp_path):
    sd_folder(tmp_path / "weights" / "stable-diffusion-v1-5")
    ctx = context("paper", tmp_path)
    with pytest.raises(InputError, match="text_encoder: missing"):  # vae/ and unet/ alone are not enough
        check_pretrained_weights(ctx)
    expected = str(tmp_path / "weights" / "stable-diffusion-v1-5")
    for name, pretrained in (("vae_image", True), ("vae_mask", False), ("ldm_mask", False), ("ldm_ius", True)):
        argv = stage(name).args(ctx)
        assert (argv[argv.index("--pretrained") + 1] == expected) if pretrained else "--pretrained" not in argv


def test_cpu_profiles_pretrain_their_own_base_once_and_finetune_every_fold_from_it(tmp_path):
    for profile in ("smoke", "default"):
        ctx = context(profile, tmp_path)
        assert all(stage(name).enabled(ctx) and not stage(name).per_fold for name in PRETRAIN_STAGES)
        for name, group in BASE_GROUP.items():  # the mask models wait only for the base's mask parts
            argv = stage(name).args(ctx)
            assert argv[argv.index("--pretrained") + 1] == "pretrain/base" and group in stage(name).deps
            assert not {"pretrain", "pretrain_mask"} - {group} & set(stage(name).deps)
        argv = stage("pretrain_ldm_image").args(ctx)
        assert argv[argv.index("--slices") + 1] == "pretrain/corpus" and argv[argv.index("--section") + 1] == "pretrain.ldm_image"
    paper = context("paper", tmp_path)
    assert not any(stage(name).enabled(paper) for name in PRETRAIN_STAGES)  # SD-1.5 is the paper's base
