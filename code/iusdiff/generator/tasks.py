"""The three training tasks of the two-step generator, run by :func:`iusdiff.generator.training.train`.

* :class:`VaeTask`: an AutoencoderKL on images, masks, or both stacked (one-step baseline).
* :class:`LdmTask`: epsilon-prediction on VAE latents; unconditional (mask generator, one-step
  baseline, ControlNet phase A) or mask-conditioned with condition dropout for classifier-free
  guidance (iUS generator; ControlNet phase B, see :mod:`iusdiff.baselines.controlnet`).

Each step draws its batch, augmentation, posterior sample, noise, timesteps and condition
dropout from generators seeded by (seed, step, stream), so a step is a function of its number.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import AutoencoderKL, DDPMScheduler
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from iusdiff.generator.data import (
    STREAM_AUGMENT,
    STREAM_DROP,
    STREAM_NOISE,
    STREAM_VALIDATION,
    Augmentation,
    FoldData,
    augment_masks,
    augment_pair,
    batch_indices,
    generator_for,
    image_tensor,
    mask_tensor,
)
from iusdiff.generator.losses import (
    PatchDiscriminator,
    Perceptual,
    adaptive_weight,
    discriminator_hinge_loss,
    generator_adversarial_loss,
    kl_loss,
    spectral_loss,
)
from iusdiff.generator.models import encode_latents, normalise_latents

KINDS = ("image", "mask", "joint")
EVAL_BATCH = 32


def vae_channels(kind: str) -> int:
    return 2 if kind == "joint" else 1


def vae_inputs(kind: str, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """What an autoencoder of ``kind`` reconstructs, in [-1, 1]: image, mask, or both stacked."""
    if kind == "image":
        return images
    if kind == "mask":
        return masks * 2 - 1
    return torch.cat([images, masks * 2 - 1], dim=1)


def resolve_steps(cfg: dict, n_train: int, world: int) -> int:
    """``steps`` as given, or ``epochs`` passes over the fold's training images."""
    if "steps" in cfg:
        return int(cfg["steps"])
    return math.ceil(cfg["epochs"] * n_train / (cfg["batch_size"] * world))


class PairedBatches:
    """A fold's training pairs and the augmented batch of any step."""

    def __init__(self, data: FoldData, aug: Augmentation | None, batch_size: int, seed: int, accelerator: Accelerator) -> None:
        self.images, self.masks = image_tensor(data.images), mask_tensor(data.masks)
        self.aug, self.batch_size, self.seed = aug, batch_size, seed
        self.rank, self.world = accelerator.process_index, accelerator.num_processes

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, step: int, with_image: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        idx = batch_indices(self.seed, step, self.batch_size, len(self), self.rank, self.world)
        images, masks = self.images[idx], self.masks[idx]
        if self.aug is None:
            return images, masks
        gen = generator_for(self.seed, step, self.rank, STREAM_AUGMENT)
        if with_image:
            return augment_pair(images, masks, self.aug, gen)
        return images, augment_masks(masks, self.aug, gen)


def batched(n: int, size: int = EVAL_BATCH) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


# ---------------------------------------------------------------------------------------------
# Autoencoders


class Reconstruction(torch.nn.Module):
    """An autoencoder's training pass (encode, posterior sample, decode) as one ``forward``:
    under several processes accelerate wraps the module in DistributedDataParallel, which has no
    ``encode``/``decode`` and synchronises gradients only for what runs through ``forward``."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, DiagonalGaussianDistribution]:
        posterior = self.vae.encode(x).latent_dist
        return self.vae.decode(posterior.sample(generator=generator)).sample, posterior


class VaeTask:
    """MSE + perceptual + adaptive PatchGAN hinge + KL·weight, AdamW; validation = reconstruction MSE."""

    def __init__(
        self,
        kind: str,
        vae: AutoencoderKL,
        batches: PairedBatches,
        val: FoldData,
        cfg: dict,
        perceptual: Perceptual | None,
        accelerator: Accelerator,
    ) -> None:
        self.kind, self.cfg, self.acc, self.batches = kind, cfg, accelerator, batches
        self.perceptual = perceptual.to(accelerator.device) if perceptual is not None else None
        disc = PatchDiscriminator(vae_channels(kind), cfg["disc_channels"], cfg["disc_layers"])
        opt_vae = torch.optim.AdamW(vae.parameters(), lr=cfg["lr"], fused=True)
        opt_disc = torch.optim.AdamW(disc.parameters(), lr=cfg["disc_lr"], betas=(0.5, 0.9), fused=True)
        self.reconstruction, self.disc, self.opt_vae, self.opt_disc = accelerator.prepare(Reconstruction(vae), disc, opt_vae, opt_disc)
        self.vae = vae  # the same parameters, unwrapped: checkpoints, validation and the saved model
        self.val_x = vae_inputs(kind, image_tensor(val.images), mask_tensor(val.masks))

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"vae": self.vae, "discriminator": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae": self.opt_vae, "discriminator": self.opt_disc}

    def train_step(self, step: int) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        images, masks = self.batches.batch(step, with_image=self.kind != "mask")
        x = vae_inputs(self.kind, images, masks).to(acc.device)
        gen = generator_for(self.batches.seed, step, self.batches.rank, STREAM_NOISE)
        adversarial = step >= cfg["disc_start"] and cfg["adversarial_weight"] > 0
        self.reconstruction.train()
        with acc.autocast():
            rec, posterior = self.reconstruction(x, gen)
            mse = F.mse_loss(rec.float(), x)
            kl = kl_loss(posterior)
            values = {"loss": 0.0, "mse": mse.item(), "kl": kl.item()}
            rec_loss = mse
            if self.perceptual is not None:
                perc = self.perceptual(rec.float(), x)
                rec_loss = rec_loss + cfg["perceptual_weight"] * perc
                values["perceptual"] = perc.item()
            if cfg["spectral_weight"] > 0:
                spectral = spectral_loss(rec, x)
                rec_loss = rec_loss + cfg["spectral_weight"] * spectral
                values["spectral"] = spectral.item()
            loss = rec_loss + cfg["kl_weight"] * kl
            if adversarial:
                g_adv = generator_adversarial_loss(self.disc(rec))
                last = self.vae.decoder.conv_out.weight
                weight = adaptive_weight(rec_loss, g_adv, last) * cfg["adversarial_weight"]
                loss = loss + weight * g_adv
                values["g_adv"], values["adv_weight"] = g_adv.item(), weight.item()
        values["loss"] = loss.item()
        acc.backward(loss)
        self.opt_vae.step()
        self.opt_vae.zero_grad(set_to_none=True)
        self.opt_disc.zero_grad(set_to_none=True)
        if adversarial:
            with acc.autocast():
                logits = self.disc(torch.cat([x, rec.detach()]))
                d_loss = discriminator_hinge_loss(*logits.float().chunk(2))
            acc.backward(d_loss)
            self.opt_disc.step()
            self.opt_disc.zero_grad(set_to_none=True)
            values["d_loss"] = d_loss.item()
        return values

    @torch.no_grad()
    def validate(self) -> float:
        vae = self.vae.eval()
        total = 0.0
        for part in batched(len(self.val_x)):
            x = self.val_x[part].to(self.acc.device)
            with self.acc.autocast():
                rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
            total += F.mse_loss(rec.float(), x, reduction="sum").item()
        return total / self.val_x.numel()

    def save_model(self, folder: Path) -> None:
        self.vae.save_pretrained(folder)


@torch.no_grad()
def set_latent_scaling(vae: AutoencoderKL, x: torch.Tensor, device: torch.device) -> dict[str, list[float]]:
    """Record per-channel latent mean and std of the training data in a scratch VAE's config.

    SD's constant 0.18215 fits SD's VAE only. A VAE trained here has its own scale per
    channel (0.3 to 2.5 seen here); normalising each channel gives every latent dimension the
    same signal-to-noise ratio along the diffusion schedule.
    """
    vae.eval()
    latents = torch.cat([vae.encode(x[part].to(device)).latent_dist.mode().float().cpu() for part in batched(len(x))])
    mean, std = latents.mean(dim=(0, 2, 3)).tolist(), latents.std(dim=(0, 2, 3)).tolist()
    vae.register_to_config(latents_mean=mean, latents_std=std, scaling_factor=1.0, shift_factor=None)
    return {"latents_mean": mean, "latents_std": std}


# ---------------------------------------------------------------------------------------------
# Latent diffusion


class LatentSource:
    """Training latents of a step: augment + encode on the fly, or draw from a pool of
    ``copies`` augmented versions of every training pair encoded once (cheap CPU training).

    ``sample``: a posterior sample (LDM's recipe, the authors'), or the posterior mode. A VAE
    trained for a few hundred steps still has posterior noise about half its latent spread;
    the mode keeps that noise out of what a short LDM training has to learn.
    """

    def __init__(
        self, batches: PairedBatches, vae: AutoencoderKL, kind: str, copies: int, sample: bool, device: torch.device
    ) -> None:
        self.batches, self.vae, self.kind, self.device = batches, vae, kind, device
        self.copies, self.sample = copies, sample
        if copies > 0:
            self.pool_params, self.pool_masks = self._encode_pool()

    @torch.no_grad()
    def _encode_pool(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.batches
        params, masks = [], []
        for index in range(self.copies):
            gen = generator_for(b.seed, index, STREAM_AUGMENT, 1)
            if b.aug is None:
                images, copy_masks = b.images, b.masks
            elif self.kind == "mask":
                images, copy_masks = b.images, augment_masks(b.masks, b.aug, gen)
            else:
                images, copy_masks = augment_pair(b.images, b.masks, b.aug, gen)
            x = vae_inputs(self.kind, images, copy_masks)
            for part in batched(len(x)):
                params.append(self.vae.encode(x[part].to(self.device)).latent_dist.parameters.float().cpu())
            masks.append(copy_masks)
        return torch.cat(params), torch.cat(masks)

    @torch.no_grad()
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(scaled latents, {0,1} masks) on the device."""
        b = self.batches
        gen = generator_for(b.seed, step, b.rank, STREAM_NOISE, 1)
        if self.copies > 0:
            idx = batch_indices(b.seed, step, b.batch_size, len(self.pool_params), b.rank, b.world)
            mean, logvar = self.pool_params[idx].chunk(2, dim=1)
            z = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * torch.randn(mean.shape, generator=gen) if self.sample else mean
            return normalise_latents(self.vae, z).to(self.device), self.pool_masks[idx].to(self.device)
        images, masks = b.batch(step, with_image=self.kind != "mask")
        x = vae_inputs(self.kind, images, masks).to(self.device, self.vae.dtype)
        return encode_latents(self.vae, x, gen if self.sample else None).float(), masks.to(self.device)


def parameter_groups(model: torch.nn.Module, cfg: dict) -> list[dict]:
    """Trainable parameters as optimizer groups: one at ``lr``, or, with ``new_layers_lr``, the
    layers a pretrained base does not have (``model.new_parameters()``: the proposed model's
    mask embedding and widened ``conv_in``) in a group of their own at that rate."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not hasattr(model, "new_parameters") or not cfg["new_layers_lr"]:
        return [{"params": trainable}]
    new = {id(p) for p in model.new_parameters()}
    return [{"params": [p for p in trainable if id(p) not in new]},
            {"params": [p for p in trainable if id(p) in new], "lr": cfg["new_layers_lr"]}]


class LdmTask:
    """Epsilon-prediction MSE. A mask-conditioned model (``mask_conditioned = True``: the
    proposed iUS model, the ControlNet) gets masks and drops them with ``uncond_prob``."""

    def __init__(
        self,
        model: torch.nn.Module,
        source: LatentSource,
        scheduler: DDPMScheduler,
        val_latents: torch.Tensor,
        val_masks: torch.Tensor,
        cfg: dict,
        accelerator: Accelerator,
        save: Callable[[torch.nn.Module, Path], None],
        validate_fid: Callable[[torch.nn.Module], float] | None = None,
    ) -> None:
        self.conditional = getattr(model, "mask_conditioned", False)  # model(z, t, masks, drop) vs model(z, t).sample
        self.cfg, self.acc, self.source, self.scheduler = cfg, accelerator, source, scheduler
        self.ema = copy.deepcopy(model).requires_grad_(False).to(accelerator.device) if cfg["ema_decay"] > 0 else None
        optimizer = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg["lr"], fused=True)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.val_latents, self.val_masks = val_latents, val_masks
        self._save, self._validate_fid = save, validate_fid

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model} | ({"ema": self.ema} if self.ema is not None else {})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer}

    def deployed(self) -> torch.nn.Module:
        """What is validated and saved: the EMA weights when kept, else the trained ones."""
        return self.ema if self.ema is not None else self.acc.unwrap_model(self.model)

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """Exponential moving average with the usual warm-up, decay min(d, (1+s)/(10+s))."""
        decay = min(self.cfg["ema_decay"], (1 + step) / (10 + step))
        for averaged, current in zip(self.ema.parameters(), self.acc.unwrap_model(self.model).parameters()):
            averaged.lerp_(current.detach(), 1.0 - decay)

    def _predict(self, noisy: torch.Tensor, t: torch.Tensor, masks: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        if self.conditional:
            return self.model(noisy, t, masks, drop)
        return self.model(noisy, t).sample

    def train_step(self, step: int) -> dict[str, float]:
        b = self.source.batches
        z, masks = self.source.batch(step)
        gen = generator_for(b.seed, step, b.rank, STREAM_NOISE, 2)
        noise = torch.randn(z.shape, generator=gen).to(z.device)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (z.shape[0],), generator=gen).to(z.device)
        drop_gen = generator_for(b.seed, step, b.rank, STREAM_DROP)
        drop = (torch.rand(z.shape[0], generator=drop_gen) < self.cfg["uncond_prob"]).to(z.device)
        self.model.train()
        with self.acc.autocast():
            pred = self._predict(self.scheduler.add_noise(z, noise, t), t, masks, drop)
            loss = F.mse_loss(pred.float(), noise)
        self.acc.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.update_ema(step)
        return {"loss": loss.item()}

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Conditional noise-prediction MSE on the validation latents with fixed noise and
        timesteps (``validation_repeats`` draws each), comparable across checkpoints."""
        model = self.deployed().eval()
        repeats = self.cfg["validation_repeats"]
        z = self.val_latents.repeat(repeats, 1, 1, 1)
        masks = self.val_masks.repeat(repeats, 1, 1, 1)
        gen = generator_for(self.source.batches.seed, STREAM_VALIDATION)
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (z.shape[0],), generator=gen)
        total = 0.0
        for part in batched(len(z)):
            zp, np_, tp = z[part].to(self.acc.device), noise[part].to(self.acc.device), t[part].to(self.acc.device)
            noisy = self.scheduler.add_noise(zp, np_, tp)
            drop = torch.zeros(len(zp), dtype=torch.bool, device=self.acc.device)
            with self.acc.autocast():
                pred = model(noisy, tp, masks[part].to(self.acc.device), drop) if self.conditional else model(noisy, tp).sample
            total += F.mse_loss(pred.float(), np_, reduction="sum").item()
        return total / z.numel()

    def validate(self) -> float:
        if self._validate_fid is not None:
            return self._validate_fid(self.deployed().eval())
        return self.validation_loss()

    def save_model(self, folder: Path) -> None:
        self._save(self.deployed(), folder)


@torch.no_grad()
def validation_latents(vae: AutoencoderKL, kind: str, data: FoldData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior-mode latents (scaled) of the validation pairs, and their masks."""
    masks = mask_tensor(data.masks)
    x = vae_inputs(kind, image_tensor(data.images), masks)
    z = torch.cat([encode_latents(vae, x[part].to(device, vae.dtype), None).float().cpu() for part in batched(len(x))])
    return z, masks
