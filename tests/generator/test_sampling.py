"""Sampling: Eq. (3) guidance arithmetic, samplers, per-sample seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel

from iusdiff.errors import InputError
from iusdiff.generator.models import MaskConditionedUNet, MaskEmbedding, noise_scheduler, zero_text_embedding
from iusdiff.generator.sampling import SAMPLERS, cfg_combine, denoise, make_sampler, sample_images, sample_masks

SCHEDULE = noise_scheduler({"timesteps": 1000, "beta_start": 0.001, "beta_end": 0.02}).config


def test_cfg_combine_is_equation_3():
    cond, null = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 1.0, 0.5])
    torch.testing.assert_close(cfg_combine(cond, null, 0.0), cond)
    torch.testing.assert_close(cfg_combine(cond, null, 3.0), torch.tensor([2.5, -11.0, 0.5]))
    torch.testing.assert_close(cfg_combine(cond, null, 7.0), 8 * cond - 7 * null)


@pytest.mark.parametrize("name", SAMPLERS)
def test_samplers_use_the_training_betas(name):
    sampler = make_sampler(name, SCHEDULE)
    assert sampler.config.beta_start == 0.001 and sampler.config.beta_end == 0.02
    sampler.set_timesteps(10)
    assert len(sampler.timesteps) == 10


def test_unknown_sampler_is_an_input_error():
    with pytest.raises(InputError, match="unknown sampler 'euler'"):
        make_sampler("euler", SCHEDULE)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_leads_a_noise_oracle_back_to_its_clean_latent(name):
    """An oracle that returns the exact noise for one known clean latent must lead every sampler
    (with the training schedule's betas and prediction type) back to that latent."""
    clean = torch.linspace(-1.5, 1.5, 2 * 4 * 4 * 4).reshape(2, 4, 4, 4)
    alphas = make_sampler("ddpm", SCHEDULE).alphas_cumprod

    def oracle(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = alphas[int(t)]
        return (z - a.sqrt() * clean) / (1 - a).sqrt()

    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    steps = 1000 if name == "ddpm" else 20
    z = denoise(oracle, tuple(clean.shape), make_sampler(name, SCHEDULE), steps, gens, "cpu")
    torch.testing.assert_close(z, clean, atol=2e-2, rtol=0)


def tiny_ius_model() -> MaskConditionedUNet:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, attention_head_dim=4, norm_num_groups=4,
    )
    embedding = MaskEmbedding(channels=(4, 4, 4, 4), out_channels=4, downsample=2)
    with torch.no_grad():
        embedding.conv_out.weight.normal_(0, 0.5)  # as after training: masks change the features
    return MaskConditionedUNet(unet, embedding, zero_text_embedding(1, 8)).eval()


def tiny_vae(levels: int) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=(4,) * levels, norm_num_groups=4,
    ).eval()


def test_guidance_weight_zero_ignores_the_null_and_positive_weights_use_it():
    model, vae = tiny_ius_model(), tiny_vae(3)
    masks = np.zeros((2, 32, 32), np.uint8)
    masks[:, 8:20, 10:22] = 1

    def run(w: float) -> np.ndarray:
        return sample_images(model, vae, SCHEDULE, masks, [11, 12], "ddim", 3, w, "cpu")

    base0, base3 = run(0.0), run(3.0)
    with torch.no_grad():
        model.embedding.null.add_(5.0)
    assert np.array_equal(run(0.0), base0)
    assert not np.array_equal(run(3.0), base3)
    assert base0.dtype == np.uint8 and base0.shape == (2, 32, 32)


def test_a_sample_depends_on_its_seed_not_on_its_batch():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=4, in_channels=4, out_channels=4, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    ).eval()
    vae = tiny_vae(4)
    together = sample_masks(unet, vae, SCHEDULE, [1, 2, 3], "ddpm", 5, "cpu")
    alone = sample_masks(unet, vae, SCHEDULE, [2], "ddpm", 5, "cpu")
    assert set(np.unique(together)) <= {0, 1}
    assert np.array_equal(together[1], alone[0])

