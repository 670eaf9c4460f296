"""Model builders of the two-step generator (paper §3.1, SPEC §4), all diffusers models.

* Autoencoders: ``AutoencoderKL``. The paper profile finetunes SD-1.5's VAE; SD's VAE is RGB,
  our data are grayscale, so its first and last convolutions are folded to one channel
  (:func:`fold_vae_channels`) in a way that leaves its behaviour on gray images unchanged.
* Mask generator: an unconditional ``UNet2DModel`` on mask latents. The authors ran an
  SD-shaped ``UNet2DConditionModel`` with a constant empty-text input; with a constant text
  input cross-attention reduces to a learned per-block bias, so the native unconditional UNet
  is the same model family without the text-encoder dependency.
* iUS generator: a mask embedding (seven 3×3 convolutions, :class:`MaskEmbedding`) concatenated
  with the noisy latent in front of a ``UNet2DConditionModel`` whose ``conv_in`` is widened
  (:func:`widen_conv_in`); text conditioning is one fixed empty-prompt embedding.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from safetensors.torch import load_file, save_file
from torch import nn

from iusdiff.errors import InputError
from iusdiff.generator.data import image_tensor, to_uint8
from iusdiff.weights import MASK_UNET_DIR, TEXT_FILE, UNET_DIR

EMBEDDING_DIR = "mask_embedding"
WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}  # frozen weights per mixed_precision


# ---------------------------------------------------------------------------------------------
# Text conditioning


def empty_prompt_embedding(root: Path) -> torch.Tensor:
    """SD's CLIP embedding of the empty prompt, (1, 77, 768); computed once per training."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer", local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(root, subfolder="text_encoder", local_files_only=True).eval()
    ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids)[0].float()


def zero_text_embedding(tokens: int, dim: int) -> torch.Tensor:
    """The default/smoke profiles' fixed text input: no text encoder, zeros (1, tokens, dim)."""
    return torch.zeros(1, tokens, dim)


def pretrained_text_embedding(root: Path) -> torch.Tensor:
    """The fixed text input a pretrained base was trained with: the one it recorded
    (``text_embedding.safetensors``, the CPU profiles' base) or SD-1.5's empty prompt."""
    if (root / TEXT_FILE).is_file():
        return load_file(root / TEXT_FILE)["text"]
    return empty_prompt_embedding(root)


# ---------------------------------------------------------------------------------------------
# Autoencoders


def vae_factor(vae: AutoencoderKL) -> int:
    """Spatial downsampling of an AutoencoderKL: one halving per block but the last."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def build_vae(cfg: dict, channels: int, size: int) -> AutoencoderKL:
    """A from-scratch AutoencoderKL for ``channels``-channel data (default/smoke, mask VAE)."""
    levels = len(cfg["block_out_channels"])
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        latent_channels=cfg["latent_channels"],
        norm_num_groups=cfg["norm_num_groups"],
        sample_size=size,
    )


def fold_vae_channels(vae: AutoencoderKL, channels: int) -> AutoencoderKL:
    """Adapt an RGB VAE to ``channels`` inputs/outputs without changing it on gray images.

    Encoder: a gray image replicated to RGB gives the same activations as the gray image
    convolved with the sum of the three input filters, so channel 0 gets that sum. Decoder:
    channel 0 outputs the mean of the RGB outputs. Extra channels (the joint image+mask VAE
    of the one-step baseline) start as zero inputs and as copies of that mean output.
    """
    enc, dec = vae.encoder.conv_in, vae.decoder.conv_out
    new_in = nn.Conv2d(channels, enc.out_channels, enc.kernel_size, enc.stride, enc.padding)
    new_out = nn.Conv2d(dec.in_channels, channels, dec.kernel_size, dec.stride, dec.padding)
    with torch.no_grad():
        new_in.weight.zero_()
        new_in.weight[:, :1] = enc.weight.sum(dim=1, keepdim=True)
        new_in.bias.copy_(enc.bias)
        new_out.weight.copy_(dec.weight.mean(dim=0, keepdim=True).expand_as(new_out.weight))
        new_out.bias.fill_(float(dec.bias.mean()))
    vae.encoder.conv_in, vae.decoder.conv_out = new_in, new_out
    vae.register_to_config(in_channels=channels, out_channels=channels)
    return vae


def load_trained_vae(folder: Path, device, dtype: torch.dtype) -> AutoencoderKL:
    """A VAE trained by train_vae.py, frozen for latent diffusion training."""
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no trained autoencoder (run train_vae.py first)")
    return AutoencoderKL.from_pretrained(folder, torch_dtype=dtype).requires_grad_(False).eval().to(device)


def load_pretrained_vae(root: Path, channels: int, subfolder: str = "vae") -> AutoencoderKL:
    """A pretrained base's autoencoder (SD-1.5's ``vae/``, or the CPU base's ``vae_mask/``),
    folded to ``channels`` when its channel count differs."""
    vae = AutoencoderKL.from_pretrained(root, subfolder=subfolder, local_files_only=True)
    return fold_vae_channels(vae, channels) if vae.config.in_channels != channels else vae


def latent_stats(vae: AutoencoderKL, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) that normalise a VAE's latents: the ``latents_mean/std`` of its
    config when set (VAEs trained here), else (0, 1/scaling_factor) (SD's VAE)."""
    cfg = vae.config
    if cfg.latents_mean is not None:
        mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1)
        std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1) / cfg.scaling_factor
    else:
        mean, std = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 1.0 / cfg.scaling_factor)
    return mean.to(like.device, like.dtype), std.to(like.device, like.dtype)


def normalise_latents(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    mean, std = latent_stats(vae, z)
    return (z - mean) / std


def encode_latents(vae: AutoencoderKL, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """x -> normalised latents; a sample of the posterior when a generator is given, else its mode."""
    dist = vae.encode(x).latent_dist
    return normalise_latents(vae, dist.sample(generator=generator) if generator is not None else dist.mode())


def decode_latents(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    mean, std = latent_stats(vae, z)
    return vae.decode(z * std + mean).sample


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 (N, H, W) images through the autoencoder (posterior mode), ``batch_size`` per call.

    Activation memory grows with the batch: SD's VAE at 256 px in fp32 holds about 160 MiB per
    image (measured on CPU), so a fold's ~350 real images in one call would need ~55 GB.
    """
    parts = []
    for start in range(0, len(images), batch_size):
        x = image_tensor(images[start : start + batch_size]).to(vae.device, vae.dtype)
        parts.append(to_uint8(decode_latents(vae, encode_latents(vae, x, None))))
    return np.concatenate(parts)


# ---------------------------------------------------------------------------------------------
# Noise schedule


def noise_scheduler(cfg: dict) -> DDPMScheduler:
    """The training schedule: linear betas, T steps, epsilon prediction, no clipping."""
    return DDPMScheduler(
        num_train_timesteps=cfg["timesteps"],
        beta_start=cfg["beta_start"],
        beta_end=cfg["beta_end"],
        beta_schedule="linear",
        clip_sample=False,
        prediction_type="epsilon",
    )


# ---------------------------------------------------------------------------------------------
# Mask generator


def at_latent_size(unet: UNet2DModel | UNet2DConditionModel, latent_size: int) -> UNet2DModel | UNet2DConditionModel:
    """A pretrained UNet recorded at this run's latent size (SD's config says 64, i.e. 512 px;
    unconditional sampling draws noise of ``sample_size``)."""
    unet.register_to_config(sample_size=latent_size)
    return unet


def _block_types(attention: list[bool], plain: str, attn: str) -> tuple[str, ...]:
    return tuple(attn if a else plain for a in attention)


def build_mask_unet(cfg: dict, latent_size: int, latent_channels: int, pretrained: Path | None = None) -> UNet2DModel:
    """Unconditional UNet2DModel on mask latents: from scratch (paper, the authors'), or the
    CPU base's ``unet_mask/`` pretrained on the outside corpus's masks."""
    if pretrained is not None:
        return at_latent_size(UNet2DModel.from_pretrained(pretrained, subfolder=MASK_UNET_DIR, local_files_only=True), latent_size)
    attention = list(cfg["attention"])
    return UNet2DModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        down_block_types=_block_types(attention, "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=_block_types(attention[::-1], "UpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=cfg["attention_head_dim"],
        norm_num_groups=cfg["norm_num_groups"],
    )


# ---------------------------------------------------------------------------------------------
# iUS generator


STRIDE2_LAYERS = (2, 4, 5)  # which of the seven convolutions halve the resolution


class MaskEmbedding(ModelMixin, ConfigMixin):
    """Mask -> latent-resolution features: seven 3×3 convolutions, SiLU between them.

    ``downsample`` of them have stride 2 (3 for SD's ×8 VAE, 2 for a ×4 VAE); the seventh is
    zero-initialised, so a fresh embedding adds nothing and a pretrained UNet starts from its
    own behaviour. Dropped conditions (classifier-free guidance) are replaced by ``null``, a
    learned map that is not the embedding of any mask, in particular not of the empty mask,
    which means "no tumour". ``null`` starts random rather than zero: with a zero-initialised
    last layer and zero-initialised ``conv_in`` columns (the pretrained widening), a zero null
    would leave every gradient into the new channels at exactly zero and the condition could
    never be learned.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        channels: tuple[int, ...] = (16, 32, 96, 256),
        out_channels: int = 4,
        downsample: int = 3,
    ) -> None:
        super().__init__()
        if not 0 <= downsample <= len(STRIDE2_LAYERS):
            raise InputError(f"mask embedding: downsample must be 0..{len(STRIDE2_LAYERS)}, got {downsample}")
        c0, c1, c2, c3 = channels
        plan = [(in_channels, c0), (c0, c0), (c0, c1), (c1, c1), (c1, c2), (c2, c3)]
        strided = STRIDE2_LAYERS[:downsample]
        self.layers = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2 if i in strided else 1, padding=1) for i, (a, b) in enumerate(plan)
        )
        self.conv_out = nn.Conv2d(c3, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.null = nn.Parameter(torch.randn(1, out_channels, 1, 1))

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        x = masks
        for layer in self.layers:
            x = nn.functional.silu(layer(x))
        return self.conv_out(x)

    def condition(self, masks: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """Embedding of each mask, or the null condition where ``drop`` is True."""
        features = self(masks)
        return torch.where(drop.view(-1, 1, 1, 1), self.null.to(features.dtype).expand_as(features), features)

    def null_condition(self, batch: int, height: int, width: int) -> torch.Tensor:
        return self.null.expand(batch, -1, height, width)


def widen_conv_in(unet: UNet2DConditionModel, in_channels: int) -> UNet2DConditionModel:
    """Give ``conv_in`` more input channels; pretrained weight AND bias kept, new columns zero.

    Because the new columns are zero, the widened UNet computes exactly what the pretrained one
    did, whatever the extra inputs hold; training then learns how to use them.
    """
    old = unet.conv_in
    if in_channels < old.in_channels:
        raise ValueError(f"conv_in has {old.in_channels} inputs; cannot narrow it to {in_channels}")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new.to(old.weight.device, old.weight.dtype)
    unet.register_to_config(in_channels=in_channels)
    return unet


def build_ius_unet(cfg: dict, latent_size: int, latent_channels: int, extra: int, pretrained: Path | None) -> UNet2DConditionModel:
    """SD-1.5's UNet widened by ``extra`` channels (paper), or a small SD-shaped one from scratch.

    From scratch there are no pretrained weights to protect, so conv_in is built at full
    width with its default initialisation rather than widened with zero columns.
    """
    if pretrained is not None:
        unet = UNet2DConditionModel.from_pretrained(pretrained, subfolder=UNET_DIR, local_files_only=True)
        return widen_conv_in(at_latent_size(unet, latent_size), unet.config.in_channels + extra)
    attention = list(cfg["attention"])
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels + extra,
        out_channels=latent_channels,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        down_block_types=_block_types(attention, "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=_block_types(attention[::-1], "UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cfg["cross_attention_dim"],
        attention_head_dim=cfg["attention_head_dim"],
        norm_num_groups=cfg["norm_num_groups"],
    )


class MaskConditionedUNet(nn.Module):
    """The proposed iUS denoiser: eps(z_t, t, c(mask)) with c = MaskEmbedding, or the null."""

    mask_conditioned = True

    def __init__(self, unet: UNet2DConditionModel, embedding: MaskEmbedding, text: torch.Tensor) -> None:
        super().__init__()
        self.unet = unet
        self.embedding = embedding
        self.register_buffer("text", text, persistent=False)

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, masks: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        condition = self.embedding.condition(masks, drop)
        return self.predict(noisy, timesteps, condition)

    def new_parameters(self) -> list[nn.Parameter]:
        """What a pretrained UNet does not bring: the mask embedding and the widened ``conv_in``."""
        return [*self.embedding.parameters(), *self.unet.conv_in.parameters()]

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Noise prediction for already-embedded conditions (lets sampling embed masks once)."""
        text = self.text.to(noisy.dtype).expand(noisy.shape[0], -1, -1)
        x = torch.cat([noisy, condition.to(noisy.dtype)], dim=1)
        return self.unet(x, timesteps, encoder_hidden_states=text).sample

    def save(self, folder: Path) -> None:
        self.unet.save_pretrained(folder / UNET_DIR)
        self.embedding.save_pretrained(folder / EMBEDDING_DIR)
        save_file({"text": self.text.contiguous().cpu()}, folder / TEXT_FILE)

    @classmethod
    def load(cls, folder: Path) -> MaskConditionedUNet:
        unet = UNet2DConditionModel.from_pretrained(folder / UNET_DIR)
        embedding = MaskEmbedding.from_pretrained(folder / EMBEDDING_DIR)
        return cls(unet, embedding, load_file(folder / TEXT_FILE)["text"])


# ---------------------------------------------------------------------------------------------
# Unconditional SD-shaped LDM: the CPU base's image UNet, ControlNet's phase A, a pretrained one-step


def text_batch(text: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return text.to(like.dtype).expand(like.shape[0], -1, -1)


class PromptedUNet(nn.Module):
    """A ``UNet2DConditionModel`` with its fixed text input, called like an unconditional
    ``UNet2DModel`` (``model(noisy, t).sample``, ``.config``, ``.dtype``), so training
    (:class:`~iusdiff.generator.tasks.LdmTask`) and sampling treat both families alike."""

    def __init__(self, unet: UNet2DConditionModel, text: torch.Tensor) -> None:
        super().__init__()
        self.unet = unet
        self.register_buffer("text", text, persistent=False)

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor):
        return self.unet(noisy, timesteps, encoder_hidden_states=text_batch(self.text, noisy))

    def save(self, folder: Path) -> None:
        self.unet.save_pretrained(folder / UNET_DIR)
        save_file({"text": self.text.contiguous().cpu()}, folder / TEXT_FILE)

    @classmethod
    def load(cls, folder: Path) -> PromptedUNet:
        if not (folder / UNET_DIR / "config.json").is_file():
            raise InputError(f"{folder}: no trained UNet (run its training script first)")
        return cls(UNet2DConditionModel.from_pretrained(folder / UNET_DIR), load_file(folder / TEXT_FILE)["text"])


def build_prompted_unet(cfg: dict, latent_size: int, latent_channels: int, pretrained: Path | None, text: torch.Tensor) -> PromptedUNet:
    """A pretrained base's UNet as it is (SD-1.5, or the CPU base), or the proposed model's small
    SD-shaped UNet without the mask channels: the same family as the proposed model's, so
    the baselines differ from it by conditioning only."""
    if pretrained is not None:
        unet = at_latent_size(UNet2DConditionModel.from_pretrained(pretrained, subfolder=UNET_DIR, local_files_only=True), latent_size)
    else:
        unet = build_ius_unet(cfg, latent_size, latent_channels, extra=0, pretrained=None)
    return PromptedUNet(unet, text)


def load_unconditional(folder: Path) -> UNet2DModel | PromptedUNet:
    """An unconditional LDM saved by train_ldm.py: SD-shaped (it saved its text input) or not."""
    if (folder / TEXT_FILE).is_file():
        return PromptedUNet.load(folder)
    return UNet2DModel.from_pretrained(folder / UNET_DIR)


def downsample_steps(factor: int) -> int:
    """Stride-2 layers the mask embedding needs to reach a VAE's latent resolution."""
    steps = int(round(math.log2(factor)))
    if 2**steps != factor:
        raise InputError(f"VAE downsampling factor {factor} is not a power of two")
    return steps


def mask_conditioned_model(cfg: dict, unet: UNet2DConditionModel, factor: int, text: torch.Tensor) -> MaskConditionedUNet:
    """The proposed denoiser around ``unet``: the profile's mask embedding, striding masks down to
    the latent grid of a ×``factor`` VAE (built after the UNet, so seeded weights stay put)."""
    embedding = MaskEmbedding(
        channels=tuple(cfg["embedding_channels"]), out_channels=cfg["embedding_out_channels"],
        downsample=downsample_steps(factor),
    )
    return MaskConditionedUNet(unet, embedding, text)
