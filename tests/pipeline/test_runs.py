"""Run plumbing: settings sections from a file or a profile, per-section augmentation, what a
finetuning run starts from."""

from __future__ import annotations

import argparse

import pytest

from iusdiff.errors import InputError
from iusdiff.pipeline.config import load_profile, stage_settings, write_stage_settings
from iusdiff.pipeline.runs import completed, pretrained_identity, save_completion, settings, training_config
from iusdiff.cli import RECOMPUTE_ENV


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"profile": "default", "settings": None, "steps": None, "checkpointing_steps": None, "seed": None,
                                 "section": None, **kw})


def test_a_dotted_section_reads_a_nested_table_with_overrides():
    table = training_config(_args(steps=7), "pretrain.ldm_image")
    assert table["steps"] == 7 and table["block_out_channels"] == [16, 32, 64]
    stage = {"sections": {"pix2pix": {"seed": 4, "ngf": 16}}}
    assert settings(stage, "pix2pix", {"seed": None, "ngf": 8}) == {"seed": 4, "ngf": 8}


def test_section_option_trains_with_another_table_and_its_augmentation_entries_win():
    cfg = training_config(_args(section="pretrain.ldm_image"), "ldm_ius")
    shared = load_profile("default")["augmentation"]
    assert cfg["steps"] == training_config(_args(), "pretrain.ldm_image")["steps"]
    assert cfg["augmentation"]["rotation_deg"] == 0.0 != shared["rotation_deg"] and cfg["augmentation"]["hflip"] is True


def test_a_settings_file_is_read_and_a_missing_section_is_named(tmp_path):
    path = tmp_path / "vae_image.json"
    write_stage_settings(path, stage_settings(load_profile("smoke"), ["vae_image"]))
    assert training_config(_args(profile=None, settings=path), "vae_image") == load_profile("smoke")["vae_image"]
    with pytest.raises(InputError, match=r"vae_image.json: no \[ldm_ius\] section"):
        training_config(_args(profile=None, settings=path), "ldm_ius")
    path.write_text("{not json")
    with pytest.raises(InputError, match="not a settings file"):
        training_config(_args(profile=None, settings=path), "vae_image")


def test_a_retrained_base_is_another_run(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    first = pretrained_identity(str(tmp_path), ("unet", "text_encoder"))
    assert pretrained_identity(str(tmp_path), ("unet", "text_encoder")) == first
    (tmp_path / "unet" / "config.json").write_text('{"changed": 1}')
    assert pretrained_identity(str(tmp_path), ("unet",)) != first
    mask_only = pretrained_identity(str(tmp_path), ("unet_mask", "vae"))
    (tmp_path / "text_embedding.safetensors").write_bytes(b"x")
    assert "text_embedding.safetensors" in pretrained_identity(str(tmp_path), ("unet", "text_encoder"))["digests"]
    # Models that read no text keep their key when the image half of the base lands beside them.
    assert pretrained_identity(str(tmp_path), ("unet_mask", "vae")) == mask_only
    assert pretrained_identity(None, ("unet",)) is None
    with pytest.raises(InputError, match="pretrained weights not found"):
        pretrained_identity(str(tmp_path / "missing"), ("unet",))


def test_a_fold_is_finished_only_with_its_key_and_every_file_as_written(tmp_path, monkeypatch):
    monkeypatch.delenv(RECOMPUTE_ENV, raising=False)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"w")
    (tmp_path / ".model.x.tmp").mkdir()  # hidden: temporary work is not part of the fold
    save_completion(tmp_path, _args(), "key", fold=1)
    assert completed(tmp_path, "key") and not completed(tmp_path, "other key")
    (tmp_path / ".model.x.tmp" / "junk").write_bytes(b"j")
    assert completed(tmp_path, "key")
    monkeypatch.setenv(RECOMPUTE_ENV, "1")
    assert not completed(tmp_path, "key")
    monkeypatch.delenv(RECOMPUTE_ENV)
    (tmp_path / "model" / "weights.bin").write_bytes(b"x")
    assert not completed(tmp_path, "key")
    (tmp_path / "model" / "weights.bin").write_bytes(b"w")
    (tmp_path / "stray.txt").write_text("s")
    assert not completed(tmp_path, "key")
    (tmp_path / "stray.txt").unlink()
    (tmp_path / "options.json").write_text("{not json")
    assert not completed(tmp_path, "key")
