"""The CPU profiles' pretrained base: pretrained on the corpus, assembled, finetuned per fold from it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel
from safetensors.torch import load_file, save_file

import train_ldm
import train_vae
from iusdiff.errors import InputError
from iusdiff.generator.models import MaskConditionedUNet, PromptedUNet
from iusdiff.generator.training import MODEL_DIR
from iusdiff.pipeline.runs import folder_digest
from iusdiff.weights import MASK_UNET_DIR, MASK_VAE_DIR, TEXT_FILE

from helpers import SIZE, run_script, sd_folder, tiny_slices


def stage_outputs(root, base):
    """What the four pretrain stages leave behind (their corpus split's model/), from a base."""
    parts = {
        "vae_image": {"": base / "vae"},
        "vae_mask": {"": base / MASK_VAE_DIR},
        "ldm_image": {"unet": base / "unet", TEXT_FILE: base / TEXT_FILE, "scheduler": None},
        "ldm_mask": {"unet": base / MASK_UNET_DIR, "scheduler": None},
    }
    for part, files in parts.items():
        model = root / part / "fold0" / MODEL_DIR
        for name, source in files.items():
            target = model / name if name else model
            if source is None:
                target.mkdir(parents=True)
                (target / "scheduler_config.json").write_text("{}")
            elif source.is_dir():
                shutil.copytree(source, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


def test_make_base_assembles_sd_layout_and_names_a_missing_part(tmp_path, smoke_base):
    stage_outputs(tmp_path / "pretrain", smoke_base)
    corpus = tiny_slices(tmp_path / "corpus")
    parts = ["--vae", "vae_image", "--unet", "ldm_image", "--vae-mask", "vae_mask", "--unet-mask", "ldm_mask"]
    argv = [*(str(tmp_path / "pretrain" / p) if p[0] != "-" else p for p in parts), "--corpus", corpus, "--out", tmp_path / "base"]
    result = run_script("make_base.py", *argv)
    assert result.returncode == 0, result.stderr
    base = tmp_path / "base"
    assert {p.name for p in base.iterdir()} == {"vae", "unet", TEXT_FILE, "scheduler", MASK_VAE_DIR, MASK_UNET_DIR, "base.json", "base_mask.json"}
    image, mask = (json.loads((base / name).read_text()) for name in ("base.json", "base_mask.json"))
    assert "outside pretraining corpus" in image["kind"] and set(image["digests"]) == {"vae", "unet"}
    assert set(mask["digests"]) == {"vae_mask", "unet_mask"}
    shutil.rmtree(tmp_path / "pretrain" / "ldm_mask")
    failed = run_script("make_base.py", *argv[:-1], tmp_path / "base2")
    assert failed.returncode == 2 and "ldm_mask/fold0/model: no trained model" in failed.stderr and not (tmp_path / "base2").exists()


def test_make_base_writes_one_group_and_leaves_the_other(tmp_path, smoke_base):
    """The pipeline assembles the mask parts and the image parts as two stages into one folder."""
    stage_outputs(tmp_path / "pretrain", smoke_base)
    corpus, base = tiny_slices(tmp_path / "corpus"), tmp_path / "base"
    mask = ["--vae-mask", tmp_path / "pretrain" / "vae_mask", "--unet-mask", tmp_path / "pretrain" / "ldm_mask"]
    image = ["--vae", tmp_path / "pretrain" / "vae_image", "--unet", tmp_path / "pretrain" / "ldm_image"]
    assert run_script("make_base.py", *mask, "--corpus", corpus, "--out", base).returncode == 0
    assert {p.name for p in base.iterdir()} == {MASK_VAE_DIR, MASK_UNET_DIR, "base_mask.json"}
    assert run_script("make_base.py", *image, "--corpus", corpus, "--out", base).returncode == 0
    assert {p.name for p in base.iterdir()} == {"vae", "unet", TEXT_FILE, "scheduler", MASK_VAE_DIR, MASK_UNET_DIR, "base.json", "base_mask.json"}
    assert folder_digest(base / MASK_UNET_DIR) == folder_digest(tmp_path / "pretrain" / "ldm_mask" / "fold0" / MODEL_DIR / "unet")
    half = run_script("make_base.py", *image[:2], "--corpus", corpus, "--out", tmp_path / "base2")
    assert half.returncode == 2 and "--unet too" in half.stderr


def test_every_per_fold_model_starts_from_the_base(tmp_path, smoke_base):
    slices = str(tiny_slices(tmp_path / "slices"))
    common = ["--slices", slices, "--profile", "smoke", "--steps", "1", "--pretrained", str(smoke_base)]
    train_vae.main(["--kind", "mask", "--out", str(tmp_path / "vae_mask"), *common])
    vae = AutoencoderKL.from_pretrained(tmp_path / "vae_mask" / "fold1" / MODEL_DIR)
    base_vae = AutoencoderKL.from_pretrained(smoke_base / MASK_VAE_DIR)
    assert vae.config.block_out_channels == base_vae.config.block_out_channels  # the base's, not [smoke.vae_mask]'s
    assert vae.config.latents_mean == base_vae.config.latents_mean  # the base's latent space is kept
    options = json.loads((tmp_path / "vae_mask" / "fold1" / "options.json").read_text())
    assert options["options"]["pretrained"] == str(smoke_base)

    train_ldm.main(["--model", "mask", "--vae", str(tmp_path / "vae_mask"), "--out", str(tmp_path / "ldm_mask"), *common])
    unet = UNet2DModel.from_pretrained(tmp_path / "ldm_mask" / "fold1" / MODEL_DIR / "unet")
    assert unet.config.block_out_channels == UNet2DModel.from_pretrained(smoke_base / MASK_UNET_DIR).config.block_out_channels
    assert unet.config.sample_size == SIZE // 8 != 8  # the run's latent grid, not the base's

    train_vae.main(["--kind", "image", "--out", str(tmp_path / "vae_image"), *common])
    train_ldm.main(["--model", "ius", "--vae", str(tmp_path / "vae_image"), "--out", str(tmp_path / "ius"), *common])
    ius = MaskConditionedUNet.load(tmp_path / "ius" / "fold1" / MODEL_DIR)
    base = PromptedUNet.load(smoke_base)
    assert torch.equal(ius.text, base.text) and ius.unet.config.in_channels == base.unet.config.in_channels + 4


def test_a_base_trained_again_retrains_the_folds(tmp_path, smoke_base):
    base = tmp_path / "base"
    shutil.copytree(smoke_base, base)
    slices = str(tiny_slices(tmp_path / "slices"))
    argv = ["--kind", "image", "--slices", slices, "--profile", "smoke", "--steps", "1", "--pretrained", str(base),
            "--out", str(tmp_path / "vae"), "--resume"]
    train_vae.main(argv)
    key = json.loads((tmp_path / "vae" / "fold1" / "options.json").read_text())["run_key"]
    weights = base / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1.0
    save_file(tensors, weights)
    train_vae.main(argv)
    assert json.loads((tmp_path / "vae" / "fold1" / "options.json").read_text())["run_key"] != key


def test_sd_has_no_mask_autoencoder_to_start_from(tmp_path):
    sd = sd_folder(tmp_path / "sd")
    with pytest.raises(InputError, match="vae_mask: missing"):
        train_vae.main(["--kind", "mask", "--slices", str(tiny_slices(tmp_path / "s")), "--out", str(tmp_path / "o"),
                        "--profile", "smoke", "--steps", "1", "--pretrained", str(sd)])
