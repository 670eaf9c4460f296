"""How close the default profile's networks run to this CPU's arithmetic peak, one thread.

For each network that dominates the default run's time, one optimisation step (forward, MSE
backward, fused AdamW) at the profile's batch size on random inputs: GFLOP per step (PyTorch's
FLOP counter: convolutions, matmuls, attention), seconds per step, and GFLOP/s as a share of a
single-thread float32 1024² matrix product measured in the same process. Inference rows: the
proposed model's guided sampling step (conditional and null passes in one batch) and the TF-FID
Inception at several batch sizes. A network far below the peak would be worth tuning; one near
it only gets faster with less arithmetic (smaller models, fewer steps) or a lower precision.

    PYTHONPATH=code python bench/arithmetic.py [--profile default] [--repeats 10]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from iusdiff.baselines.pix2pix import PatchDiscriminator, UNetGenerator, levels_for
from iusdiff.evaluation.fid import InceptionFeatures
from iusdiff.generator.models import (
    MaskConditionedUNet,
    build_ius_unet,
    build_mask_unet,
    build_vae,
    mask_conditioned_model,
    vae_factor,
    zero_text_embedding,
)
from iusdiff.pipeline.config import load_profile

Step = Callable[[], None]


def sgemm_peak(n: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of one thread on an n×n float32 matrix product (the best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def training_step(model: torch.nn.Module, forward: Callable[[], torch.Tensor], target: torch.Tensor) -> Step:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        loss = F.mse_loss(forward(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def vae_step(cfg: dict, channels: int, size: int) -> Step:
    vae = build_vae(cfg, channels, size)
    x = torch.randn(cfg["batch_size"], channels, size, size)
    return training_step(vae, lambda: vae.decode(vae.encode(x).latent_dist.sample()).sample, x)


def latent_grid(vae_cfg: dict, size: int) -> tuple[int, int]:
    """(VAE downsampling factor, latent side) of the autoencoder these settings build."""
    factor = vae_factor(build_vae(vae_cfg, 1, size))
    return factor, size // factor


def mask_ldm_step(cfg: dict, vae_cfg: dict, size: int) -> Step:
    _, latent = latent_grid(vae_cfg, size)
    unet = build_mask_unet(cfg, latent, vae_cfg["latent_channels"])
    z = torch.randn(cfg["batch_size"], vae_cfg["latent_channels"], latent, latent)
    t = torch.randint(0, 1000, (len(z),))
    return training_step(unet, lambda: unet(z, t).sample, z)


def ius_model(cfg: dict, vae_cfg: dict, size: int) -> tuple[MaskConditionedUNet, int, int]:
    factor, latent = latent_grid(vae_cfg, size)
    channels = vae_cfg["latent_channels"]
    unet = build_ius_unet(cfg, latent, channels, cfg["embedding_out_channels"], None)
    text = zero_text_embedding(cfg["text_tokens"], unet.config.cross_attention_dim)
    return mask_conditioned_model(cfg, unet, factor, text), latent, channels


def ius_ldm_step(cfg: dict, vae_cfg: dict, size: int) -> Step:
    model, latent, channels = ius_model(cfg, vae_cfg, size)
    batch = cfg["batch_size"]
    z = torch.randn(batch, channels, latent, latent)
    masks = (torch.rand(batch, 1, size, size) > 0.8).float()
    t, drop = torch.randint(0, 1000, (batch,)), torch.rand(batch) < cfg["uncond_prob"]
    return training_step(model, lambda: model(z, t, masks, drop), z)


def pix2pix_step(cfg: dict, size: int) -> Step:
    """Generator and discriminator forward/backward (the GAN's two updates, one MSE each)."""
    generator = UNetGenerator(levels_for(size), ngf=cfg["ngf"])
    disc = PatchDiscriminator(ndf=cfg["ndf"], n_layers=cfg["disc_layers"])
    masks = torch.randn(cfg["batch_size"], 1, size, size)
    images = torch.randn_like(masks)
    g_step = training_step(generator, lambda: generator(masks), images)
    d_step = training_step(disc, lambda: disc(masks, images), torch.zeros_like(disc(masks, images)))

    def step() -> None:
        g_step()
        d_step()

    return step


def guided_sampling_step(cfg: dict, vae_cfg: dict, size: int, batch: int) -> Step:
    """One denoising step of classifier-free guidance: conditional and null passes in one batch."""
    model, latent, channels = ius_model(cfg, vae_cfg, size)
    model.eval()
    z = torch.randn(2 * batch, channels, latent, latent)
    condition = torch.randn(2 * batch, cfg["embedding_out_channels"], latent, latent)
    t = torch.full((2 * batch,), 500)

    @torch.inference_mode()
    def step() -> None:
        model.predict(z, t, condition)

    return step


def inception_step(extractor: InceptionFeatures, images: list[np.ndarray]) -> Step:
    return lambda: extractor(images)


def measure(step: Step, repeats: int) -> tuple[float, float]:
    """(GFLOP per call, median seconds per call) after two warm-up calls."""
    with FlopCounterMode(display=False) as counter:
        step()
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return counter.get_total_flops() / 1e9, float(np.median(times))


def workloads(profile: dict) -> list[tuple[str, str, int, Step]]:
    """(row name, unit, items per call, step) for the profile's dominant networks."""
    size = profile["size"]
    rows = [
        ("vae_image training step", "images", profile["vae_image"]["batch_size"], vae_step(profile["vae_image"], 1, size)),
        ("vae_mask training step", "masks", profile["vae_mask"]["batch_size"], vae_step(profile["vae_mask"], 1, size)),
        ("ldm_mask training step", "latents", profile["ldm_mask"]["batch_size"],
         mask_ldm_step(profile["ldm_mask"], profile["vae_mask"], size)),
        ("ldm_ius training step", "latents", profile["ldm_ius"]["batch_size"],
         ius_ldm_step(profile["ldm_ius"], profile["vae_image"], size)),
        ("pix2pix training step (G + D)", "pairs", profile["pix2pix"]["batch_size"], pix2pix_step(profile["pix2pix"], size)),
    ]
    batch = profile["sampling"]["batch_size"]
    rows.append(("ldm_ius guided sampling step", "images", batch,
                 guided_sampling_step(profile["ldm_ius"], profile["vae_image"], size, batch)))
    images = [np.random.default_rng(i).integers(0, 256, (size, size), dtype=np.uint8) for i in range(16)]
    for inception_batch in (1, 4, 16):
        extractor = InceptionFeatures(batch_size=inception_batch, progress=False)
        rows.append((f"Inception features, batch {inception_batch}", "images", len(images), inception_step(extractor, images)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row (median reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    profile = load_profile(args.profile)
    peak = sgemm_peak()
    print(f"profile {args.profile}, one thread; float32 SGEMM 1024² peak: {peak:.1f} GFLOP/s\n")
    print("| workload | GFLOP per call | s per call | items/s | GFLOP/s | % of SGEMM peak |")
    print("|---|---|---|---|---|---|")
    for name, unit, items, step in workloads(profile):
        gflop, seconds = measure(step, args.repeats)
        rate = gflop / seconds
        print(f"| {name} | {gflop:.2f} | {seconds:.3f} | {items / seconds:.1f} {unit} | {rate:.1f} | {100 * rate / peak:.0f} |")


if __name__ == "__main__":
    main()
