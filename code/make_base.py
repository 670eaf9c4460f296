#!/usr/bin/env python3
"""Assemble the CPU profiles' pretrained base from the pretrain stages, in SD-1.5's layout.

    python code/make_base.py --vae DIR --unet DIR --vae-mask DIR --unet-mask DIR --corpus DIR --out DIR

Inputs are the pretrain stages' outputs on the outside corpus (train_vae.py / train_ldm.py
with --settings pretrain.*; their corpus split's model is used). OUT gets vae/ and unet/ with
text_embedding.safetensors and scheduler/ (as SD-1.5's diffusers folder has vae/, unet/ and
its text encoder), plus vae_mask/ and unet_mask/ for the mask models, and base.json saying
what it is. Per-fold trainings start from it with --pretrained OUT, the same option (and code
path) that starts the paper profile from SD-1.5. OUT appears only when complete.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from iusdiff.cli import run, save_options
from iusdiff.corpus import CORPUS_FOLD, LABEL
from iusdiff.errors import InputError
from iusdiff.io import atomic_dir
from iusdiff.models import MASK_UNET_DIR, MASK_VAE_DIR, SCHEDULER_DIR, UNET_DIR
from iusdiff.runs import folder_digest
from iusdiff.slices import load_dataset
from iusdiff.training import MODEL_DIR
from iusdiff.weights import TEXT_FILE


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", type=Path, required=True, help="pretrained image autoencoder (train_vae.py --kind image)")
    parser.add_argument("--unet", type=Path, required=True, help="pretrained unconditional iUS LDM (train_ldm.py --model image)")
    parser.add_argument("--vae-mask", type=Path, required=True, help="pretrained mask autoencoder (train_vae.py --kind mask)")
    parser.add_argument("--unet-mask", type=Path, required=True, help="pretrained mask LDM (train_ldm.py --model mask)")
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus they were trained on (make_corpus.py)")
    parser.add_argument("--out", type=Path, required=True, help="the base folder (replaced atomically)")
    return parser.parse_args(argv)


def trained_model(run_dir: Path) -> Path:
    """The best model of a pretrain stage (its corpus split's ``model/``)."""
    folder = run_dir / f"fold{CORPUS_FOLD}" / MODEL_DIR
    if not (folder / "config.json").is_file() and not (folder / UNET_DIR / "config.json").is_file():
        raise InputError(f"{folder}: no trained model (run the pretrain stages first)")
    return folder


def main(argv=None) -> int:
    args = parse_args(argv)
    corpus = load_dataset(args.corpus)
    models = {"vae": args.vae, "unet": args.unet, "vae_mask": args.vae_mask, "unet_mask": args.unet_mask}
    sources = {name: trained_model(folder) for name, folder in models.items()}
    with atomic_dir(args.out) as tmp:
        shutil.copytree(sources["vae"], tmp / "vae")
        shutil.copytree(sources["unet"] / UNET_DIR, tmp / UNET_DIR)
        shutil.copyfile(sources["unet"] / TEXT_FILE, tmp / TEXT_FILE)
        shutil.copytree(sources["unet"] / SCHEDULER_DIR, tmp / SCHEDULER_DIR)
        shutil.copytree(sources["vae_mask"], tmp / MASK_VAE_DIR)
        shutil.copytree(sources["unet_mask"] / UNET_DIR, tmp / MASK_UNET_DIR)
        save_options(
            tmp / "base.json", args, kind=f"pretrained base of the CPU profiles, trained on the {LABEL}",
            corpus_subjects=len({r.subject for r in corpus.records}), corpus_slices=len(corpus.records),
            sources={name: str(folder) for name, folder in sources.items()},
            digests={name: folder_digest(folder) for name, folder in sources.items()},
        )
    print(f"make_base: pretrained base ({', '.join(models)}) -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
