"""The generator's model builders: conv_in widening, SD-format loading, mask embedding, null."""

from __future__ import annotations

import sys

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from iusdiff.errors import InputError
from iusdiff.generator.models import (
    MaskConditionedUNet,
    MaskEmbedding,
    build_ius_unet,
    downsample_steps,
    empty_prompt_embedding,
    fold_vae_channels,
    load_pretrained_vae,
    widen_conv_in,
    zero_text_embedding,
)
from iusdiff.weights import check_pretrained, resolve_pretrained

from helpers import CLIP_TOKENS, TINY_UNET, TINY_VAE, sd_folder, tiny_unet


def test_widened_conv_in_leaves_the_pretrained_output_unchanged():
    unet = tiny_unet()
    x = torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 500])
    text = torch.randn(2, 3, 16)
    with torch.no_grad():
        before = unet(x, t, encoder_hidden_states=text).sample
        old_weight, old_bias = unet.conv_in.weight.clone(), unet.conv_in.bias.clone()
        widen_conv_in(unet, 8)
        extra_zero = unet(torch.cat([x, torch.zeros(2, 4, 8, 8)], 1), t, encoder_hidden_states=text).sample
        extra_any = unet(torch.cat([x, torch.randn(2, 4, 8, 8)], 1), t, encoder_hidden_states=text).sample
    assert unet.config.in_channels == 8 and unet.conv_in.in_channels == 8
    assert torch.equal(unet.conv_in.weight[:, :4], old_weight) and torch.equal(unet.conv_in.bias, old_bias)
    assert torch.count_nonzero(unet.conv_in.weight[:, 4:]) == 0
    torch.testing.assert_close(extra_zero, before, rtol=0, atol=1e-6)
    torch.testing.assert_close(extra_any, before, rtol=0, atol=1e-6)


def test_widened_unet_survives_save_pretrained(tmp_path):
    unet = widen_conv_in(tiny_unet(), 8)
    unet.save_pretrained(tmp_path / "unet")
    again = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    assert again.config.in_channels == 8 and torch.equal(again.conv_in.weight, unet.conv_in.weight)


def test_sd_format_folder_loads_through_the_paper_code_path(tmp_path):
    root = sd_folder(tmp_path / "sd")
    assert check_pretrained(root, ("vae", "unet")) == root
    reference = tiny_unet()
    unet = build_ius_unet({}, 8, 4, extra=4, pretrained=root)  # what train_ldm.py does for the paper profile
    assert unet.config.in_channels == 8
    x, t, text = torch.randn(1, 4, 8, 8), torch.tensor([3]), torch.randn(1, 2, 16)
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=text).sample
        got = unet.eval()(torch.cat([x, torch.randn(1, 4, 8, 8)], 1), t, encoder_hidden_states=text).sample
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    vae = load_pretrained_vae(root, channels=1)
    assert vae.config.in_channels == 1 and vae.config.out_channels == 1


def test_folding_sd_vae_to_gray_keeps_its_behaviour_on_gray_images():
    torch.manual_seed(0)
    rgb = AutoencoderKL(**TINY_VAE).eval()
    torch.manual_seed(0)
    gray = fold_vae_channels(AutoencoderKL(**TINY_VAE), 1).eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z_rgb = rgb.encode(x.expand(-1, 3, -1, -1)).latent_dist.mode()
        z_gray = gray.encode(x).latent_dist.mode()
        out_rgb = rgb.decode(z_rgb).sample.mean(dim=1, keepdim=True)
        out_gray = gray.decode(z_gray).sample
    torch.testing.assert_close(z_gray, z_rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_gray, out_rgb, rtol=1e-5, atol=1e-5)


def test_missing_pretrained_weights_are_named(tmp_path):
    with pytest.raises(InputError, match="pretrained weights not found"):
        resolve_pretrained(tmp_path / "nowhere")
    root = sd_folder(tmp_path / "sd")
    with pytest.raises(InputError, match="text_encoder: missing or incomplete"):
        check_pretrained(root)


def test_sd_text_encoder_gives_the_empty_prompt_embedding(tmp_path):
    root = sd_folder(tmp_path / "sd", with_text=True)
    assert check_pretrained(root) == root
    embedding = empty_prompt_embedding(root)  # what train_ldm.py conditions the paper profile's UNet on
    assert embedding.shape == (1, CLIP_TOKENS, TINY_UNET["cross_attention_dim"]) and torch.isfinite(embedding).all()


def test_without_transformers_the_text_encoder_check_says_what_to_install(tmp_path, monkeypatch):
    root = sd_folder(tmp_path / "sd", with_text=True)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as in an environment without the package
    with pytest.raises(InputError, match="needs the 'transformers' package.*requirements.txt"):
        check_pretrained(root)


def test_truncated_or_unreadable_sd_files_are_named(tmp_path):
    root = sd_folder(tmp_path / "sd", with_text=True)
    weights = root / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError, match=r"unet/diffusion_pytorch_model.safetensors: not a complete safetensors file"):
        check_pretrained(root)
    sd_folder(tmp_path / "sd2", with_text=True)
    (tmp_path / "sd2" / "tokenizer" / "tokenizer.json").write_text("not json")
    with pytest.raises(InputError, match=r"tokenizer: transformers cannot read it"):
        check_pretrained(tmp_path / "sd2")


@pytest.mark.parametrize("factor, steps", [(8, 3), (4, 2)])
def test_mask_embedding_reaches_the_latent_resolution_and_starts_at_zero(factor, steps):
    assert downsample_steps(factor) == steps
    torch.manual_seed(0)
    embedding = MaskEmbedding(channels=(4, 8, 8, 8), out_channels=4, downsample=steps)
    convs = [m for m in embedding.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7 and sum(c.stride == (2, 2) for c in convs) == steps
    masks = (torch.rand(3, 1, 64, 64) > 0.5).float()
    out = embedding(masks)
    assert out.shape == (3, 4, 64 // factor, 64 // factor)
    assert torch.count_nonzero(out) == 0  # zero-initialised last layer


def test_null_condition_is_not_the_empty_mask():
    torch.manual_seed(0)
    embedding = MaskEmbedding(channels=(4, 8, 8, 8), out_channels=4, downsample=3)
    empty, tumour = torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64)
    tumour[:, :, 20:40, 20:40] = 1
    with torch.no_grad():  # also after training has moved the last layer away from zero
        embedding.conv_out.weight.normal_(0, 0.1)
        kept = embedding.condition(torch.cat([empty, tumour]), torch.tensor([False, False, False, False]))
        dropped = embedding.condition(torch.cat([empty, tumour]), torch.tensor([True, True, True, True]))
    null = embedding.null_condition(1, 8, 8)
    assert not torch.allclose(kept[:2], dropped[:2])  # empty mask ("no tumour") is not the null
    torch.testing.assert_close(dropped, null.expand(4, -1, -1, -1))
    assert not torch.allclose(kept[0], kept[2])  # the embedding does see the tumour


def test_mask_conditioned_unet_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    embedding = MaskEmbedding(channels=(4, 8, 8, 8), out_channels=4, downsample=3)
    unet = UNet2DConditionModel(**{**TINY_UNET, "in_channels": 8})
    model = MaskConditionedUNet(unet, embedding, zero_text_embedding(1, 16)).eval()
    model.save(tmp_path / "m")
    again = MaskConditionedUNet.load(tmp_path / "m").eval()
    z, masks = torch.randn(2, 4, 8, 8), (torch.rand(2, 1, 64, 64) > 0.5).float()
    drop = torch.tensor([False, True])
    with torch.no_grad():
        torch.testing.assert_close(again(z, torch.tensor([5, 7]), masks, drop), model(z, torch.tensor([5, 7]), masks, drop))
