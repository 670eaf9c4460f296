"""The atomic writers: an operating system's refusal names the output, never a temporary name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iusdiff.errors import OutputError
from iusdiff.io import atomic_dir, atomic_path, write_json

from helpers import read_only


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) for a real ENOSPC")
def test_a_full_disk_names_the_file_being_written(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(OutputError, match=f"^{target}: No space left on device$"):
        with atomic_path(target) as tmp, open("/dev/full", "wb") as disk:
            tmp.write_text("started")
            disk.write(b"x" * 10)  # the kernel's ENOSPC on write(): an OSError that names no file
            disk.flush()
    assert not target.exists() and os.listdir(tmp_path) == []


def test_a_read_only_folder_names_the_output_not_its_temporary_sibling(tmp_path):
    with read_only(tmp_path):
        with pytest.raises(OutputError, match=f"^{tmp_path / 'run.json'}: Read-only file system$"):
            write_json(tmp_path / "run.json", {})
        with pytest.raises(OutputError, match=f"^{tmp_path / 'model'}: Read-only file system$"):
            with atomic_dir(tmp_path / "model"):
                pass
    assert os.listdir(tmp_path) == []


def test_an_error_inside_a_folder_names_the_file_below_the_output(tmp_path):
    with pytest.raises(OutputError, match=f"^{tmp_path / 'model' / 'unet'}: Read-only file system$"):
        with atomic_dir(tmp_path / "model") as tmp:
            with read_only(tmp):
                (tmp / "unet").mkdir()
    assert os.listdir(tmp_path) == []


def test_a_missing_input_read_inside_the_block_is_named_as_itself(tmp_path):
    missing = tmp_path / "inputs" / "slices.csv"
    with pytest.raises(OutputError, match=f"^{missing}: No such file or directory$"):
        with atomic_path(tmp_path / "out.csv"):
            Path(missing).read_text()


def modes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): oct(p.stat().st_mode & 0o777) for p in sorted(root.rglob("*"))}


def test_saved_models_get_the_modes_of_every_other_output(tmp_path):
    """diffusers' save_pretrained and safetensors write 0600 files; outputs are 0o666 & ~umask."""
    import torch
    from diffusers import UNet2DModel
    from safetensors.torch import save_file

    previous = os.umask(0o022)
    try:
        model = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(4, 4), layers_per_block=1,
                            norm_num_groups=2, add_attention=False, down_block_types=("DownBlock2D",) * 2,
                            up_block_types=("UpBlock2D",) * 2)
        with atomic_dir(tmp_path / "model") as tmp:
            model.save_pretrained(tmp / "unet")
            save_file({"text": torch.zeros(2)}, tmp / "text.safetensors")
        with atomic_path(tmp_path / "weights.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, tmp)
    finally:
        os.umask(previous)
    assert modes(tmp_path / "model") == {"text.safetensors": "0o644", "unet": "0o755", "unet/config.json": "0o644",
                                         "unet/diffusion_pytorch_model.safetensors": "0o644"}
    assert {k: v for k, v in modes(tmp_path).items() if "/" not in k} == {"model": "0o755", "weights.safetensors": "0o644"}
