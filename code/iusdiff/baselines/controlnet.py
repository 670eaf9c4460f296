"""The ControlNet baseline (paper §3.3, SPEC §4): two phases on the proposed model's image VAE.

* Phase A (:class:`PromptedUNet`): an SD-shaped ``UNet2DConditionModel`` finetuned
  unconditionally on iUS latents; its text input is one fixed embedding (SD's CLIP empty prompt
  in the paper profile, zeros in default/smoke, as for the proposed model).
* Phase B (:class:`ControlledUNet`): ``ControlNetModel.from_unet`` of the phase-A UNet, trained
  with that UNet frozen; the conditioning image is the {0,1} tumour mask at full resolution.

Conditioning channels: 1. SD's ControlNets take RGB hint images; a binary mask replicated to
three channels would only make the first convolution sum three identical filters, so the mask
goes in as the single channel it is, with the same {0,1} values the proposed model's mask
embedding sees. The conditioning embedding (``conditioning_embedding_out_channels``) must halve
the resolution once per halving of the VAE (three times for SD's x8 VAE, twice for the x4 VAE
of the default/smoke profiles), so its channel list has one entry more than that.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from torch import nn

from iusdiff.errors import InputError
from iusdiff.generator.data import mask_tensor, to_uint8
from iusdiff.generator.models import PromptedUNet, decode_latents, downsample_steps, text_batch, vae_factor
from iusdiff.generator.sampling import IMAGE_NOISE, denoise, generators, make_sampler
from iusdiff.generator.tasks import LdmTask

CONTROLNET_DIR = "controlnet"
CONDITIONING_CHANNELS = 1  # the mask itself, not an RGB hint image (module docstring)


def build_controlnet(unet: UNet2DConditionModel, embedding_channels: Sequence[int], vae: AutoencoderKL) -> ControlNetModel:
    """``ControlNetModel.from_unet`` with a one-channel conditioning embedding that reaches the
    VAE's latent resolution."""
    needed = downsample_steps(vae_factor(vae))
    if len(embedding_channels) - 1 != needed:
        raise InputError(
            f"controlnet: conditioning_embedding_channels {list(embedding_channels)} halve the mask "
            f"{len(embedding_channels) - 1} time(s); the VAE needs {needed} (give {needed + 1} channel counts)"
        )
    return ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=tuple(embedding_channels), conditioning_channels=CONDITIONING_CHANNELS
    )


class ControlledUNet(nn.Module):
    """Phase B's denoiser: the frozen phase-A UNet plus the ControlNet's residuals.

    Called like the proposed model, ``model(noisy, t, masks, drop)``; a dropped sample gets no
    residuals, i.e. the phase-A UNet alone (the profiles never drop: no condition dropout).
    """

    mask_conditioned = True

    def __init__(self, base: PromptedUNet, controlnet: ControlNetModel) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.controlnet = controlnet

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, masks: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        text = text_batch(self.base.text, noisy)
        down, mid = self.controlnet(
            noisy, timesteps, encoder_hidden_states=text, controlnet_cond=masks.to(noisy.dtype), return_dict=False
        )
        keep = (~drop).to(noisy.dtype).view(-1, 1, 1, 1)
        return self.base.unet(
            noisy,
            timesteps,
            encoder_hidden_states=text,
            down_block_additional_residuals=[r * keep for r in down],
            mid_block_additional_residual=mid * keep,
        ).sample

    @classmethod
    def load(cls, phase_a: Path, phase_b: Path) -> ControlledUNet:
        if not (phase_b / CONTROLNET_DIR / "config.json").is_file():
            raise InputError(f"{phase_b}: no trained ControlNet (run train_controlnet.py first)")
        return cls(PromptedUNet.load(phase_a), ControlNetModel.from_pretrained(phase_b / CONTROLNET_DIR))


class ControlNetTask(LdmTask):
    """Phase B: :class:`LdmTask` on a :class:`ControlledUNet`. Only the ControlNet has trainable
    weights, so only it (and its EMA) is checkpointed; the frozen UNet is phase A's saved model."""

    def modules(self) -> dict[str, torch.nn.Module]:
        trained = {"controlnet": self.acc.unwrap_model(self.model).controlnet}
        return trained | ({"ema": self.ema.controlnet} if self.ema is not None else {})


@torch.no_grad()
def sample_controlnet_images(
    model: ControlledUNet,
    vae: AutoencoderKL,
    training_config: dict,
    masks: np.ndarray,
    seeds: Sequence[int],
    sampler: str,
    steps: int,
    device,
) -> np.ndarray:
    """uint8 images (n, H, W) for {0,1} masks (n, H, W); no guidance (see sample.py).

    The initial noise is the proposed model's for the same seed (same stream).
    """
    dtype = model.base.unet.dtype
    cond = mask_tensor(masks).to(device, dtype)
    latent = masks.shape[-1] // vae_factor(vae)
    shape = (len(seeds), model.base.unet.config.out_channels, latent, latent)
    no_drop = torch.zeros(len(seeds), dtype=torch.bool, device=device)

    def predict(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(z.to(dtype), t, cond, no_drop).float()

    z = denoise(predict, shape, make_sampler(sampler, training_config), steps, generators(seeds, IMAGE_NOISE), device)
    return to_uint8(decode_latents(vae, z.to(vae.dtype)))
