#!/usr/bin/env python3
"""Assemble the CPU profiles' pretrained base from the pretrain stages, in SD-1.5's layout.

    python code/make_base.py --vae DIR --unet DIR --vae-mask DIR --unet-mask DIR --corpus DIR --out DIR
    python code/make_base.py --vae-mask DIR --unet-mask DIR --corpus DIR --out DIR   # the mask parts only
    python code/make_base.py --vae DIR --unet DIR --corpus DIR --out DIR             # the image parts only

Inputs are the pretrain stages' outputs on the outside corpus (train_vae.py / train_ldm.py
with --settings pretrain.*; their corpus split's model is used). OUT gets the parts whose
inputs are given: the image parts vae/ and unet/ with text_embedding.safetensors and
scheduler/ (as SD-1.5's diffusers folder has vae/, unet/ and its text encoder), recorded in
base.json; the mask parts vae_mask/ and unet_mask/, recorded in base_mask.json. Per-fold
trainings start from it with --pretrained OUT, the same option (and code path) that starts
the paper profile from SD-1.5. The pipeline assembles the two groups as separate stages, so
the per-fold mask models finetune while the base iUS LDM is still pretraining. Each part
appears only when complete.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from iusdiff.cli import run, save_options
from iusdiff.data.corpus import CORPUS_FOLD, LABEL
from iusdiff.data.slices import load_dataset
from iusdiff.errors import InputError
from iusdiff.io import atomic_dir, atomic_path
from iusdiff.outputs.layout import BASE_MASK_RECORD, BASE_RECORD, model_dir
from iusdiff.pipeline.runs import folder_digest
from iusdiff.weights import MASK_UNET_DIR, MASK_VAE_DIR, SCHEDULER_DIR, TEXT_FILE, UNET_DIR

# group -> (its record, {part: (option, what it copies from the stage's model/ -> where in OUT)})
GROUPS = {
    "image": (BASE_RECORD, {
        "vae": ("vae", {"": "vae"}),
        "unet": ("unet", {UNET_DIR: UNET_DIR, TEXT_FILE: TEXT_FILE, SCHEDULER_DIR: SCHEDULER_DIR}),
    }),
    "mask": (BASE_MASK_RECORD, {
        "vae_mask": ("vae_mask", {"": MASK_VAE_DIR}),
        "unet_mask": ("unet_mask", {UNET_DIR: MASK_UNET_DIR}),
    }),
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", type=Path, help="pretrained image autoencoder (train_vae.py --kind image)")
    parser.add_argument("--unet", type=Path, help="pretrained unconditional iUS LDM (train_ldm.py --model image)")
    parser.add_argument("--vae-mask", type=Path, help="pretrained mask autoencoder (train_vae.py --kind mask)")
    parser.add_argument("--unet-mask", type=Path, help="pretrained mask LDM (train_ldm.py --model mask)")
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus they were trained on (make_corpus.py)")
    parser.add_argument("--out", type=Path, required=True, help="the base folder (each part replaced atomically)")
    return parser.parse_args(argv)


def chosen_groups(args) -> list[str]:
    """The groups whose stage outputs are given; a group is given whole or not at all."""
    groups = []
    for group, (_, parts) in GROUPS.items():
        given = [option for option, _ in parts.values() if getattr(args, option) is not None]
        if given and len(given) < len(parts):
            missing = sorted({option for option, _ in parts.values()} - set(given))
            raise InputError(f"the {group} parts of the base need --{' and --'.join(o.replace('_', '-') for o in missing)} too")
        if given:
            groups.append(group)
    if not groups:
        raise InputError("nothing to assemble: give --vae and --unet (image parts) and/or --vae-mask and --unet-mask (mask parts)")
    return groups


def trained_model(run_dir: Path) -> Path:
    """The best model of a pretrain stage (its corpus split's ``model/``)."""
    folder = model_dir(run_dir, CORPUS_FOLD)
    if not (folder / "config.json").is_file() and not (folder / UNET_DIR / "config.json").is_file():
        raise InputError(f"{folder}: no trained model (run the pretrain stages first)")
    return folder


def copy_atomically(source: Path, target: Path) -> None:
    if source.is_dir():
        with atomic_dir(target) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
    else:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def group_sources(group: str, args) -> dict[str, Path]:
    return {part: trained_model(getattr(args, option)) for part, (option, _) in GROUPS[group][1].items()}


def assemble(group: str, sources: dict[str, Path], args, corpus) -> None:
    record, parts = GROUPS[group]
    for part, (_, copies) in parts.items():
        for inside, target in copies.items():
            copy_atomically(sources[part] / inside if inside else sources[part], args.out / target)
    save_options(
        args.out / record, args, kind=f"pretrained base of the CPU profiles ({group} parts), trained on the {LABEL}",
        corpus_subjects=len({r.subject for r in corpus.records}), corpus_slices=len(corpus.records),
        sources={name: str(folder) for name, folder in sources.items()},
        digests={name: folder_digest(folder) for name, folder in sources.items()},
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    groups = chosen_groups(args)
    corpus = load_dataset(args.corpus)
    sources = {group: group_sources(group, args) for group in groups}  # every input checked before anything is written
    for group in groups:
        assemble(group, sources[group], args, corpus)
    print(f"make_base: pretrained base ({' and '.join(groups)} parts) -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
