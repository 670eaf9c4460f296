#!/usr/bin/env python3
"""Draw N synthetic mask-image pairs from one trained fold's two-step generator (not a pipeline stage).

    python code/generate.py --models OUT [--fold K] --n N --out DIR [--format png|nnunet]
                            [--seed S] [--guidance W] [--sampler ddpm|ddim|dpmsolver++] [--steps N|all]
                            [--batch-size B] [--device cpu|cuda] [--profile NAME]
    python code/generate.py --vae-mask DIR --ldm-mask DIR --vae-image DIR --ldm-ius DIR --n N --out DIR [...]

``--models OUT`` is a run's output folder (e.g. ``outputs/default``); with ``--fold K`` (default
1) the four models are ``OUT/models/{vae_mask,ldm_mask,vae_image,ldm_ius}/foldK/model``.
``--vae-mask`` etc. name a trained ``model`` folder each, and replace that one of ``--models``.
Masks come from the mask LDM (binarised at 0.5), then one image per mask from the iUS LDM with
classifier-free guidance w.

``--format png`` writes ``masks/{index:05d}.png`` ({0,1}), ``images/{index:05d}.png`` and
``manifest.csv`` (the sample contract); ``--format nnunet`` an nnU-Net v2 raw dataset:
``imagesTr/syn_{index:05d}_0000.png``, ``labelsTr/syn_{index:05d}.png`` ({0,1}) and
``dataset.json`` (named after ``--out``; name it ``DatasetXXX_Name`` for nnU-Net), with the same
``manifest.csv``. Both get ``options.json``. ``--out`` is replaced atomically. Empty masks are
kept and flagged in the manifest.

Seeds: pair ``index`` has seed ``seed_for(S, K, index)``, as in the sampling stage, so the same
options give the same bytes (on the same device and thread count).

Defaults of sampler, steps, batch size, seed and w (each option on the command line wins): the
first of
1. ``OUT/samples/proposed/foldK/options.json``, the fold's sampling record: its [sampling]
   settings and the w it picked on validation;
2. ``OUT/run.json``: the run's profile's [sampling] section, w = its first guidance value;
3. ``--profile NAME``'s [sampling] section (``default`` when not given), w = its first guidance
   value. An explicit ``--profile`` wins over 1 and 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iusdiff.cli import options_record, run
from iusdiff.generator.generate import PARTS, fold_models, generate, recorded_sampling, torch_device
from iusdiff.pipeline.config import PROFILES, load_profile


def steps_argument(value: str) -> int | str:
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of steps or 'all', got {value!r}") from None


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="a run's output folder (its models/<part>/fold{K}/model)")
    parser.add_argument("--fold", type=int, default=1, help="the fold whose models draw (default 1); it enters the seeds")
    for name in PARTS.values():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=Path, help=f"the trained {name} model folder")
    parser.add_argument("--n", type=int, required=True, help="number of pairs")
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--format", default="png", help="png (PNG pairs + manifest.csv) or nnunet (nnU-Net v2 raw dataset)")
    parser.add_argument("--seed", type=int, help="base seed (default: the recorded one)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance weight w (default: the fold's pick)")
    parser.add_argument("--sampler", help="ddpm, ddim or dpmsolver++ (default: the recorded one)")
    parser.add_argument("--steps", type=steps_argument, help="sampler steps, or 'all' (DDPM) (default: the recorded ones)")
    parser.add_argument("--batch-size", type=int, help="pairs per UNet batch (default: the recorded one)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--profile", choices=PROFILES, help="take the defaults from this profile's [sampling] section")
    return parser.parse_args(argv)


def sampling_defaults(args) -> tuple[dict, float, str]:
    """The [sampling] settings, the w and where they come from (see the docstring)."""
    found = recorded_sampling(args.models, args.fold) if args.models is not None and args.profile is None else None
    if found is not None:
        cfg, w, path = found
        return cfg, cfg["guidance"][0] if w is None else w, str(path)
    name = args.profile or "default"
    cfg = load_profile(name)["sampling"]
    return cfg, cfg["guidance"][0], f"profile {name}"


def main(argv=None) -> int:
    args = parse_args(argv)
    dirs = fold_models(args.models, args.fold, **{part: getattr(args, name) for part, name in PARTS.items()})
    device = torch_device(args.device)
    cfg, w, source = sampling_defaults(args)
    chosen = {key: getattr(args, key) for key in ("sampler", "steps", "batch_size", "seed")}
    cfg = {**cfg, **{key: value for key, value in chosen.items() if value is not None}}
    w = w if args.guidance is None else args.guidance
    samples = generate(
        dirs, args.n, args.out, fmt=args.format, fold=args.fold, seed=cfg["seed"], w=w, sampler=cfg["sampler"],
        steps=cfg["steps"], batch_size=cfg["batch_size"], device=device, record=options_record(args, defaults_from=source),
    )
    empty = sum(s.empty for s in samples)
    print(f"generate: {len(samples)} pairs ({args.format}; {samples[0].sampler}, {samples[0].steps} steps, w = {w}), "
          f"{empty} empty mask(s) -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
