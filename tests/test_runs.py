"""Run plumbing: dotted settings tables, per-section augmentation, what a finetuning run starts from."""

from __future__ import annotations

import argparse

import pytest

from iusdiff.errors import InputError
from iusdiff.runs import augmentation_settings, pretrained_identity, settings, training_config


def test_a_dotted_section_reads_a_nested_table_and_a_missing_one_is_named():
    table = settings("default", "pretrain.ldm_image", {"steps": 7})
    assert table["steps"] == 7 and table["block_out_channels"] == [16, 32, 64]
    with pytest.raises(InputError, match=r"no \[default\.pretrain\.nothing\] settings"):
        settings("default", "pretrain.nothing", {})


def test_settings_option_trains_with_another_table_and_its_augmentation_entries_win():
    args = argparse.Namespace(profile="default", steps=None, checkpointing_steps=None, seed=None, settings="pretrain.ldm_image")
    cfg = training_config(args, "ldm_ius")
    shared = settings("default", "augmentation", {})
    assert cfg["steps"] == settings("default", "pretrain.ldm_image", {})["steps"]
    assert cfg["augmentation"]["rotation_deg"] == 0.0 != shared["rotation_deg"] and cfg["augmentation"]["hflip"] is True
    assert augmentation_settings("default", {}) == shared


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
