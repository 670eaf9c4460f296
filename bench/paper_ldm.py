"""Training step of the paper-size mask-conditioned LDM on a GPU: precision, attention, memory
format and torch.compile, with step time, samples/s, peak memory and MFU.

The model is the `paper` profile's proposed iUS denoiser with random weights: SD-1.5's UNet
shapes (320–1280 channels, cross-attention on CLIP-sized 77 × 768 text states, ``conv_in``
widened by the mask embedding's 4 channels) and the seven-layer mask embedding, at the
profile's batch size (32) and 256 px (32 × 32 × 4 latents). One step is what
``iusdiff.generator.tasks.LdmTask.train_step`` does: noise at random timesteps, conditions dropped with
p = 0.1, noise-prediction MSE, fused AdamW on float32 weights; "bf16" is autocast around the
forward pass, as ``accelerate``'s mixed precision. FLOPs per step come from PyTorch's counter on
one eager float32 step; MFU divides the achieved FLOP/s by the device's dense bf16 peak (a table
of known GPUs, or ``--peak-tflops``), for every row including float32 ones. The last column
projects the paper's 290k steps of one fold at the row's speed.

    PYTHONPATH=code python bench/paper_ldm.py [--device cuda] [--steps 20] [--warmup 5]
        [--configs fp32,bf16,bf16+math,bf16+channels_last,bf16+compile] [--peak-tflops T]

``--tiny`` swaps in a small UNet and 64 px so the script itself can be checked on a CPU.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor
from torch.utils.flop_counter import FlopCounterMode

from iusdiff.generator.models import MaskConditionedUNet, mask_conditioned_model, noise_scheduler, zero_text_embedding
from iusdiff.pipeline.config import load_profile

SD_LATENT_CHANNELS, SD_FACTOR, SD_TEXT_TOKENS, SD_TEXT_DIM = 4, 8, 77, 768
TINY_UNET = {"block_out_channels": (32, 64), "layers_per_block": 1, "norm_num_groups": 8,
             "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
             "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D")}
# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,  # "H100" alone: SXM
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
CONFIG_FLAGS = {"fp32", "bf16", "math", "channels_last", "compile"}


@dataclass(frozen=True)
class Config:
    name: str
    bf16: bool
    math_attention: bool
    channels_last: bool
    compile: bool

    @classmethod
    def parse(cls, name: str) -> Config:
        flags = set(name.split("+"))
        unknown = flags - CONFIG_FLAGS
        if unknown or len(flags & {"fp32", "bf16"}) != 1:
            raise SystemExit(f"config {name!r}: start with fp32 or bf16, then any of +math, +channels_last, +compile")
        return cls(name, "bf16" in flags, "math" in flags, "channels_last" in flags, "compile" in flags)


def paper_model(size: int, tiny: bool) -> MaskConditionedUNet:
    """The proposed denoiser at the paper's shapes (random weights) or a tiny stand-in."""
    cfg = load_profile("paper")["ldm_ius"]
    shapes = TINY_UNET if tiny else {}
    text_dim = 32 if tiny else SD_TEXT_DIM
    unet = UNet2DConditionModel(
        sample_size=size // SD_FACTOR, in_channels=SD_LATENT_CHANNELS + cfg["embedding_out_channels"],
        out_channels=SD_LATENT_CHANNELS, cross_attention_dim=text_dim, **shapes,
    )
    return mask_conditioned_model(cfg, unet, SD_FACTOR, zero_text_embedding(SD_TEXT_TOKENS, text_dim))


def make_step(model: MaskConditionedUNet, config: Config, batch: int, size: int, device: torch.device) -> Callable[[], None]:
    """One optimisation step of LdmTask on random latents and masks, per ``config``."""
    cfg = load_profile("paper")["ldm_ius"]
    scheduler = noise_scheduler(cfg)
    if config.math_attention:
        model.unet.set_attn_processor(AttnProcessor())
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], fused=True)
    forward = torch.compile(model) if config.compile else model
    generator = torch.Generator().manual_seed(0)
    latent = size // SD_FACTOR
    z = torch.randn(batch, SD_LATENT_CHANNELS, latent, latent, generator=generator).to(device, memory_format=memory_format)
    masks = (torch.rand(batch, 1, size, size, generator=generator) > 0.8).float().to(device, memory_format=memory_format)
    noise = torch.randn(z.shape, generator=generator).to(device, memory_format=memory_format)
    t = torch.randint(0, cfg["timesteps"], (batch,), generator=generator).to(device)
    drop = (torch.rand(batch, generator=generator) < cfg["uncond_prob"]).to(device)
    noisy = scheduler.add_noise(z, noise, t)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)

    def step() -> None:
        with autocast:
            pred = forward(noisy, t, masks, drop)
        F.mse_loss(pred.float(), noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(model: MaskConditionedUNet, batch: int, size: int, device: torch.device) -> float:
    """FLOPs of one eager float32 training step (the same for every config)."""
    step = make_step(model, Config("fp32", False, False, False, False), batch, size, device)
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def time_config(config: Config, batch: int, size: int, tiny: bool, device: torch.device, warmup: int, steps: int) -> tuple[float, float | None]:
    """(median seconds per step, peak GiB on CUDA) after ``warmup`` steps (compilation included)."""
    torch.manual_seed(0)
    step = make_step(paper_model(size, tiny), config, batch, size, device)
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return sorted(times)[len(times) // 2], peak


def device_peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    """(dense bf16 TFLOP/s, device name): ``override``, else the first known name the device's contains."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    if override is not None:
        return override, name
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None), name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=load_profile("paper")["ldm_ius"]["batch_size"])
    parser.add_argument("--size", type=int, default=load_profile("paper")["size"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per config (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (torch.compile compiles here)")
    parser.add_argument("--configs", default="fp32,bf16,bf16+math,bf16+channels_last,bf16+compile")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the built-in table")
    parser.add_argument("--paper-steps", type=int, default=load_profile("paper")["ldm_ius"]["steps"])
    parser.add_argument("--tiny", action="store_true", help="a small UNet: checks the script on a CPU")
    args = parser.parse_args(argv)
    configs = [Config.parse(name) for name in args.configs.split(",") if name]
    device = torch.device(args.device)
    torch.manual_seed(0)
    flops = step_flops(paper_model(args.size, args.tiny), args.batch, args.size, device)
    peak, name = device_peak_tflops(device, args.peak_tflops)
    print(f"{name}; {'tiny UNet' if args.tiny else 'SD-1.5-shaped UNet'}, batch {args.batch}, {args.size} px; "
          f"{flops / 1e12:.3g} TFLOP per training step; bf16 peak: {f'{peak:g} TFLOP/s' if peak else 'unknown (--peak-tflops)'}\n")
    print("| config | s per step | samples/s | peak GiB | TFLOP/s | MFU | h for the paper's steps |")
    print("|---|---|---|---|---|---|---|")
    for config in configs:
        seconds, memory = time_config(config, args.batch, args.size, args.tiny, device, args.warmup, args.steps)
        achieved = flops / seconds / 1e12
        mfu = f"{100 * achieved / peak:.3g}%" if peak else "n/a"
        gib = f"{memory:.1f}" if memory is not None else "n/a"
        hours = args.paper_steps * seconds / 3600
        print(f"| {config.name} | {seconds:.4f} | {args.batch / seconds:.1f} | {gib} | {achieved:.3g} | {mfu} | {hours:.1f} |")


if __name__ == "__main__":
    main()
