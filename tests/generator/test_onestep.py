"""The one-step baseline: joint (image, mask) autoencoder, unconditional LDM, paired decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel
from safetensors.torch import load_file

import sample
import train_ldm
import train_vae
from iusdiff.errors import InputError
from iusdiff.generator.models import PromptedUNet, build_mask_unet, load_unconditional, noise_scheduler
from iusdiff.generator.sampling import sample_joint
from iusdiff.generator.tasks import LdmTask, validation_latents
from iusdiff.generator.training import CHECKPOINTS, MODEL_DIR, make_accelerator, set_determinism

from helpers import LDM_CFG, SIZE, InterruptAt, check_contract, fold_data, latent_source, run, tiny_slices, tiny_vae


UNET_CFG = {"block_out_channels": [8, 8], "layers_per_block": 1, "attention": [False, True], "attention_head_dim": 4, "norm_num_groups": 4}
SCHEDULE = noise_scheduler(LDM_CFG).config


def tiny_unet() -> UNet2DModel:
    set_determinism(3)
    return build_mask_unet(UNET_CFG, SIZE // 4, 4).eval()


def onestep_task() -> LdmTask:
    acc, vae = make_accelerator("no"), tiny_vae(channels=2)
    z, masks = validation_latents(vae, "joint", fold_data(4, 1), acc.device)
    save = lambda m, f: m.save_pretrained(f / "unet")  # noqa: E731
    return LdmTask(tiny_unet(), latent_source(vae, acc, "joint"), noise_scheduler(LDM_CFG), z, masks, LDM_CFG, acc, save)


def test_the_joint_decoder_returns_a_binary_mask_and_an_image_of_the_slice_size():
    masks, images = sample_joint(tiny_unet(), tiny_vae(channels=2), SCHEDULE, [1, 2, 3], "ddim", 2, "cpu")
    assert masks.shape == images.shape == (3, SIZE, SIZE)
    assert masks.dtype == images.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
    again, _ = sample_joint(tiny_unet(), tiny_vae(channels=2), SCHEDULE, [3], "ddim", 2, "cpu")
    assert np.array_equal(again[0], masks[2])  # a pair depends on its seed, not its batch


def test_the_joint_decoder_refuses_a_one_channel_autoencoder():
    with pytest.raises(InputError, match="joint"):
        sample_joint(tiny_unet(), tiny_vae(channels=1), SCHEDULE, [1], "ddim", 2, "cpu")


def test_an_interrupted_onestep_ldm_resumes_into_the_same_run(tmp_path):
    straight = run(onestep_task(), tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(InterruptAt(onestep_task(), 3), tmp_path / "resumed")
    assert [p.name for p in (tmp_path / "resumed" / CHECKPOINTS).iterdir()] == ["step-0000002"]
    resumed = run(onestep_task(), tmp_path / "resumed", resume=True)
    assert resumed.history == straight.history and resumed.validation == straight.validation
    a = load_file(tmp_path / "straight" / MODEL_DIR / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "resumed" / MODEL_DIR / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_train_vae_joint_train_ldm_onestep_and_sample_onestep_write_the_contract(tmp_path, smoke_base):
    slices = str(tiny_slices(tmp_path / "slices"))
    common = ["--slices", slices, "--profile", "smoke", "--steps", "2", "--pretrained", str(smoke_base)]
    train_vae.main(["--kind", "joint", "--out", str(tmp_path / "vae_joint"), *common])
    assert AutoencoderKL.from_pretrained(tmp_path / "vae_joint" / "fold1" / MODEL_DIR).config.in_channels == 2  # the base's, folded
    train_ldm.main(["--model", "onestep", "--vae", str(tmp_path / "vae_joint"), "--out", str(tmp_path / "ldm"), *common])
    model = load_unconditional(tmp_path / "ldm" / "fold1" / MODEL_DIR)  # the base's SD-shaped UNet with its text input
    assert isinstance(model, PromptedUNet) and model.config.in_channels == 4 and model.config.sample_size == 32 // 4
    sample.main(["--model", "onestep", "--slices", slices, "--joint-vae", str(tmp_path / "vae_joint"),
                 "--onestep-ldm", str(tmp_path / "ldm"), "--out", str(tmp_path / "onestep"), "--profile", "smoke"])
    check_contract(tmp_path / "onestep" / "fold1", 6)  # N = the fold's 6 training slices
