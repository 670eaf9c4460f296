"""Sampling the two-step generator: samplers, classifier-free guidance, masks then images.

Samplers are diffusers schedulers built from the training schedule's config: ``ddpm`` (the
paper's, all T steps), ``ddim`` and ``dpmsolver++`` (fewer steps; their quality is measured,
not assumed). Every sample has its own seed, so its noise does not depend on the batch it is
drawn in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from iusdiff.errors import InputError
from iusdiff.generator.data import binarise, generator_for, mask_tensor, to_uint8
from iusdiff.generator.models import MaskConditionedUNet, decode_latents

SAMPLERS = ("ddpm", "ddim", "dpmsolver++")
MASK_NOISE, IMAGE_NOISE = 0, 1  # per-sample generator streams

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_sampler(name: str, training_config: dict):
    """A fresh scheduler (they keep per-run state) with the training betas."""
    if name == "ddpm":
        return DDPMScheduler.from_config(training_config)
    if name == "ddim":
        return DDIMScheduler.from_config(training_config)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(training_config, algorithm_type="dpmsolver++")
    raise InputError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def cfg_combine(eps_cond: torch.Tensor, eps_null: torch.Tensor, w: float) -> torch.Tensor:
    """Eq. (3): eps = (1 + w)·eps_cond − w·eps_null; w = 0 is the conditional model alone."""
    return (1.0 + w) * eps_cond - w * eps_null


@torch.no_grad()
def denoise(predict: Predict, shape: tuple[int, ...], sampler, steps: int, generators: list[torch.Generator], device) -> torch.Tensor:
    """Run a sampler from per-sample Gaussian noise to clean latents."""
    z = randn_tensor(shape, generator=generators, device=torch.device(device)) * sampler.init_noise_sigma
    sampler.set_timesteps(steps, device=device)
    for t in sampler.timesteps:
        eps = predict(sampler.scale_model_input(z, t), t)
        z = sampler.step(eps, t, z, generator=generators).prev_sample
    return z


def generators(seeds: Sequence[int], stream: int) -> list[torch.Generator]:
    return [generator_for(seed, stream) for seed in seeds]


@torch.no_grad()
def sample_unconditional(
    unet: UNet2DModel, vae: AutoencoderKL, training_config: dict, seeds: Sequence[int], sampler: str, steps: int, device
) -> torch.Tensor:
    """Decoded samples (n, C, H, W) in about [-1, 1] of an unconditional LDM (MASK_NOISE stream)."""
    shape = (len(seeds), unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)

    def predict(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(z.to(unet.dtype), t).sample.float()

    z = denoise(predict, shape, make_sampler(sampler, training_config), steps, generators(seeds, MASK_NOISE), device)
    return decode_latents(vae, z.to(vae.dtype))


def sample_masks(
    unet: UNet2DModel, vae: AutoencoderKL, training_config: dict, seeds: Sequence[int], sampler: str, steps: int, device
) -> np.ndarray:
    """{0,1} uint8 masks (n, H, W): mask latents decoded and binarised at 0.5."""
    return binarise(sample_unconditional(unet, vae, training_config, seeds, sampler, steps, device))


def sample_joint(
    unet: UNet2DModel, vae: AutoencoderKL, training_config: dict, seeds: Sequence[int], sampler: str, steps: int, device
) -> tuple[np.ndarray, np.ndarray]:
    """The one-step baseline's pairs: ({0,1} uint8 masks, uint8 images), each (n, H, W).

    The joint autoencoder decodes (image, mask) as channels 0 and 1 (``tasks.vae_inputs``); the
    mask channel is binarised at 0.5 like the mask generator's.
    """
    x = sample_unconditional(unet, vae, training_config, seeds, sampler, steps, device)
    if x.shape[1] != 2:
        raise InputError(f"one-step sampling needs the joint (image, mask) autoencoder; this one decodes {x.shape[1]} channel(s)")
    return binarise(x[:, 1:2]), to_uint8(x[:, 0:1])


@torch.no_grad()
def sample_images(
    model: MaskConditionedUNet,
    vae: AutoencoderKL,
    training_config: dict,
    masks: np.ndarray,
    seeds: Sequence[int],
    sampler: str,
    steps: int,
    w: float,
    device,
) -> np.ndarray:
    """uint8 images (n, H, W) for {0,1} masks (n, H, W) with guidance weight ``w``.

    Conditional and null predictions come from one UNet call on a doubled batch.
    """
    dtype = model.unet.dtype
    condition = model.embedding(mask_tensor(masks).to(device, dtype))
    n, _, h, wd = condition.shape
    null = model.embedding.null_condition(n, h, wd).to(dtype)
    both = torch.cat([condition, null])
    shape = (n, model.unet.config.out_channels, h, wd)

    def predict(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = model.predict(torch.cat([z, z]).to(dtype), t, both).float()
        eps_cond, eps_null = eps.chunk(2)
        return cfg_combine(eps_cond, eps_null, w)

    z = denoise(predict, shape, make_sampler(sampler, training_config), steps, generators(seeds, IMAGE_NOISE), device)
    return to_uint8(decode_latents(vae, z.to(vae.dtype)))
