"""The training loop: an interrupted run resumes into the loss sequence of an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from iusdiff.generator.data import Augmentation
from iusdiff.generator.models import MaskConditionedUNet, MaskEmbedding, build_ius_unet, build_vae, noise_scheduler, zero_text_embedding
from iusdiff.generator.tasks import LatentSource, LdmTask, PairedBatches, VaeTask, parameter_groups, validation_latents
from iusdiff.generator.training import CHECKPOINTS, MODEL_DIR, LoopConfig, make_accelerator, run_key, set_determinism, train

from helpers import REPO, InterruptAt, Interrupted, fold_data


LOOP = LoopConfig(steps=6, validation_steps=2, checkpointing_steps=2, keep_checkpoints=1, warmup_steps=2, lr_schedule="cosine")
VAE_CFG = {
    "block_out_channels": [4, 4], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4, "lr": 1e-3,
    "kl_weight": 1e-6, "perceptual_weight": 0.0, "adversarial_weight": 0.5, "disc_start": 3, "disc_channels": 4,
    "disc_layers": 2, "disc_lr": 1e-4, "spectral_weight": 0.0,
}
LDM_CFG = {"lr": 1e-3, "uncond_prob": 0.5, "validation_repeats": 1, "ema_decay": 0.9, "new_layers_lr": 0.0}


def vae_task(kind: str = "image") -> VaeTask:
    set_determinism(0)
    acc = make_accelerator("no")
    batches = PairedBatches(fold_data(12, 0), Augmentation(), 4, seed=5, accelerator=acc)
    return VaeTask(kind, build_vae(VAE_CFG, 1, 32), batches, fold_data(4, 1), VAE_CFG, None, acc)


def ius_task(cfg: dict = LDM_CFG) -> LdmTask:
    set_determinism(0)
    acc = make_accelerator("no")
    vae = build_vae(VAE_CFG, 1, 32).requires_grad_(False).eval()
    batches = PairedBatches(fold_data(12, 0), Augmentation(), 4, seed=5, accelerator=acc)
    unet_cfg = {"block_out_channels": [4, 4], "layers_per_block": 1, "attention": [False, True], "attention_head_dim": 4,
                "norm_num_groups": 4, "cross_attention_dim": 4}

    unet = build_ius_unet(unet_cfg, 16, 4, extra=4, pretrained=None)
    model = MaskConditionedUNet(unet, MaskEmbedding(channels=(4, 4, 4, 4), out_channels=4, downsample=1), zero_text_embedding(1, 4))
    scheduler = noise_scheduler({"timesteps": 1000, "beta_start": 0.001, "beta_end": 0.02})
    source = LatentSource(batches, vae, "image", copies=0, sample=True, device=acc.device)
    z, masks = validation_latents(vae, "image", fold_data(4, 1), acc.device)
    return LdmTask(model, source, scheduler, z, masks, cfg, acc, lambda m, folder: m.save(folder))


def run(task, out, resume: bool = False):
    return train(task, LOOP, out, run_key("test"), task.acc, resume, desc="test", log=lambda _: None)


@pytest.mark.parametrize("make", [vae_task, ius_task], ids=["vae-with-gan", "ius-ldm-with-ema-and-cfg-dropout"])
def test_interrupted_training_resumes_into_the_same_loss_sequence(tmp_path, make):
    straight = run(make(), tmp_path / "straight")
    with pytest.raises(Interrupted):
        run(InterruptAt(make(), 5), tmp_path / "resumed")  # dies after the step-4 checkpoint
    assert [p.name for p in (tmp_path / "resumed" / CHECKPOINTS).iterdir()] == ["step-0000004"]
    resumed = run(make(), tmp_path / "resumed", resume=True)
    assert resumed.history == straight.history  # bitwise: same batches, noise, dropout, optimizer state
    assert resumed.validation == straight.validation and resumed.best_step == straight.best_step
    assert (tmp_path / "resumed" / "log.csv").read_bytes() == (tmp_path / "straight" / "log.csv").read_bytes()
    for a, b in zip(sorted((tmp_path / "straight" / MODEL_DIR).rglob("*.safetensors")),
                    sorted((tmp_path / "resumed" / MODEL_DIR).rglob("*.safetensors"))):
        assert load_file(a).keys() == load_file(b).keys()
        assert all(torch.equal(load_file(a)[k], load_file(b)[k]) for k in load_file(a))


def test_gan_and_ema_paths_are_exercised(tmp_path):
    state = run(vae_task(), tmp_path / "vae")
    assert "g_adv" not in state.history[2] and "g_adv" in state.history[3]  # disc_start = 3
    assert (tmp_path / "vae" / "log.csv").read_text().splitlines()[0] == "step,adv_weight,d_loss,g_adv,kl,loss,mse"
    task = ius_task()
    run(task, tmp_path / "ius")
    trained = dict(task.acc.unwrap_model(task.model).named_parameters())
    assert any(not torch.equal(p, trained[name]) for name, p in task.ema.named_parameters())


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path):
    run(vae_task(), tmp_path / "a")
    state_file = tmp_path / "a" / CHECKPOINTS / "step-0000006" / "state.json"
    assert json.loads(state_file.read_text())["run_key"] == run_key("test")
    messages = []
    task = vae_task()
    train(task, LOOP, tmp_path / "a", run_key("other"), task.acc, True, desc="test", log=messages.append)
    assert any("different run" in m for m in messages)


def model_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / MODEL_DIR).rglob("*")) if p.is_file()}


def test_a_bad_checkpoint_is_set_aside_with_one_line_and_the_one_before_resumes(tmp_path):
    loop = LoopConfig(**{**LOOP.__dict__, "keep_checkpoints": 2})
    straight = train(vae_task(), loop, tmp_path / "straight", run_key("test"), make_accelerator("no"), False, desc="t", log=print)
    with pytest.raises(Interrupted):
        task = InterruptAt(vae_task(), 5)
        train(task, loop, tmp_path / "resumed", run_key("test"), task.acc, False, desc="t", log=print)
    bad = tmp_path / "resumed" / CHECKPOINTS / "step-0000004"
    weights = bad / "vae.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as a full disk or a killed copy leaves it
    messages = []
    task = vae_task()
    resumed = train(task, loop, tmp_path / "resumed", run_key("test"), task.acc, True, desc="t", log=messages.append)
    warnings = [m for m in messages if m.startswith("warning:")]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "vae.safetensors changed" in warnings[0]
    assert "resuming from step-0000002" in messages[-1]
    assert resumed.history == straight.history and model_bytes(tmp_path / "resumed") == model_bytes(tmp_path / "straight")
    assert (tmp_path / "resumed" / ".set-aside" / "step-0000004" / "vae.safetensors").stat().st_size == 100  # kept, hidden


def test_an_unreadable_checkpoint_state_starts_afresh_and_a_changed_model_is_restored(tmp_path):
    run(vae_task(), tmp_path / "straight")
    clean = model_bytes(tmp_path / "straight")
    model = next((tmp_path / "straight" / MODEL_DIR).rglob("*.safetensors"))
    data = bytearray(model.read_bytes())
    data[-200] ^= 1
    model.write_bytes(bytes(data))
    messages = []
    task = vae_task()
    train(task, LOOP, tmp_path / "straight", run_key("test"), task.acc, True, desc="t", log=messages.append)
    assert messages == ["t: resuming from step-0000006"] and model_bytes(tmp_path / "straight") == clean  # from the checkpoint's copy
    (tmp_path / "straight" / CHECKPOINTS / "step-0000006" / "state.json").write_text("{")
    messages.clear()
    task = vae_task()
    train(task, LOOP, tmp_path / "straight", run_key("test"), task.acc, True, desc="t", log=messages.append)
    assert len(messages) == 1 and "state.json unreadable" in messages[0] and model_bytes(tmp_path / "straight") == clean


SAVE_SPY = '''import os
from diffusers import ModelMixin

_save = ModelMixin.save_pretrained


def save_pretrained(self, *args, **kwargs):  # the real method, with a note of the writing rank
    with open(os.environ["IUSDIFF_SAVE_LOG"], "a") as log:
        log.write(f"{os.environ['RANK']} {type(self).__name__}\\n")
    return _save(self, *args, **kwargs)


ModelMixin.save_pretrained = save_pretrained
'''


def test_two_processes_train_an_autoencoder_and_only_the_main_one_writes_models(smoke_data, tmp_path):
    """train_vae.py under torchrun with two CPU processes (gloo), as a multi-GPU launcher runs it:
    the training runs through DistributedDataParallel, and every save_pretrained (best
    checkpoint and the final model with its latent statistics) happens on rank 0 only."""
    (tmp_path / "spy").mkdir()
    (tmp_path / "spy" / "sitecustomize.py").write_text(SAVE_SPY)
    log = tmp_path / "saves.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "spy"), str(REPO / "code")]), IUSDIFF_SAVE_LOG=str(log),
               OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(REPO / "code" / "train_vae.py"),
               "--kind", "mask", "--slices", str(smoke_data / "slices"), "--out", str(tmp_path / "vae"), "--profile", "smoke",
               "--folds", "1", "--steps", "4", "--section", "pretrain.vae_mask"]  # from scratch: finalise records latent statistics
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("train_vae: mask autoencoders") == 2  # both ranks trained
    saves = log.read_text().split("\n")[:-1]
    assert saves and set(saves) == {"0 AutoencoderKL"}, saves  # validation at steps 3 and 4, then finalise
    model = AutoencoderKL.from_pretrained(tmp_path / "vae" / "fold1" / MODEL_DIR)
    assert model.config.latents_mean is not None  # finalise recorded the latent statistics
    assert json.loads((tmp_path / "vae" / "fold1" / "options.json").read_text())["steps"] == 4


def test_new_layers_get_their_own_rate_and_resume_with_it(tmp_path):
    task = ius_task()
    model = task.acc.unwrap_model(task.model)
    assert len(parameter_groups(model, LDM_CFG)) == 1
    groups = parameter_groups(model, {**LDM_CFG, "new_layers_lr": 5e-2})
    new = {id(p) for p in groups[1]["params"]}
    assert groups[1]["lr"] == 5e-2 and "lr" not in groups[0]
    assert new == {id(p) for p in [*model.embedding.parameters(), *model.unet.conv_in.parameters()]}
    assert len(groups[0]["params"]) + len(new) == len([p for p in model.parameters() if p.requires_grad])

    def make():
        return ius_task({**LDM_CFG, "new_layers_lr": 5e-2})

    straight = run(make(), tmp_path / "straight")
    assert [g["lr"] for g in make().optimizer.param_groups] == [1e-3, 5e-2]
    with pytest.raises(Interrupted):
        run(InterruptAt(make(), 5), tmp_path / "resumed")
    assert run(make(), tmp_path / "resumed", resume=True).history == straight.history
