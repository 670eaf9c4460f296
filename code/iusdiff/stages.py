"""The pipeline's stages, in order. Adding a stage is one ``Stage(...)`` entry here.

Arguments are derived from the profile (``iusdiff/profiles.toml``); paths are relative to
the output folder, which is the scripts' working directory.
"""

from __future__ import annotations

from pathlib import Path

from iusdiff.errors import InputError
from iusdiff.pipeline import Context, Stage
from iusdiff.resect import mask_path, us_path

PHANTOM_DIR = "phantom"


def is_phantom(ctx: Context) -> bool:
    return ctx.profile["data"] == "phantom"


def data_roots(profile: dict, out_phantom: str = PHANTOM_DIR) -> tuple[str, str]:
    """Where the slices stage reads RESECT-layout data for a profile (before CLI overrides)."""
    if profile["data"] == "phantom":
        return f"{out_phantom}/RESECT", f"{out_phantom}/RESECT_segmentation"
    return profile["resect_root"], profile["seg_root"]


def check_real_data(ctx: Context) -> None:
    """Before any work: every case's US volume and mask must be where the profile says."""
    if is_phantom(ctx):
        return
    where = (
        "put the RESECT download (NIFTI/CaseN/US/...) and RESECT-SEG (CaseN/...-tumor.nii.gz) under "
        "data/RESECT and data/RESECT_segmentation, or pass --resect-root / --seg-root; to run the embedded "
        "phantom default instead: ./run_all.sh --profile default (Docker: docker compose --profile cpu run cpu)"
    )
    for root in (ctx.resect_root, ctx.seg_root):
        if not Path(root).is_dir():
            raise InputError(f"profile '{ctx.profile['name']}' needs RESECT data: {root} does not exist; {where}")
    for case in ctx.profile["cases"]:
        us_path(ctx.resect_root, case)
        mask_path(ctx.seg_root, case)


def _cases(ctx: Context) -> str:
    return ",".join(str(c) for c in ctx.profile["cases"])


STAGES: list[Stage] = [
    Stage(
        name="phantom",
        script="make_phantom.py",
        outputs=(PHANTOM_DIR, "figures/phantom_montage.png"),
        args=lambda ctx: [
            "--out", PHANTOM_DIR,
            "--seed", ctx.profile["phantom"]["seed"],
            "--scale", ctx.profile["phantom"]["scale"],
            "--cases", _cases(ctx),
            "--montage", "figures/phantom_montage.png",
        ],
        enabled=is_phantom,
    ),
    Stage(
        name="slices",
        script="prepare_data.py",
        outputs=("slices",),
        args=lambda ctx: [
            "--resect-root", ctx.resect_root,
            "--seg-root", ctx.seg_root,
            "--out", "slices",
            "--size", ctx.profile["size"],
            "--cases", _cases(ctx),
        ],
        deps=("phantom",),
        preflight=check_real_data,
    ),
    Stage(
        name="table1",
        script="make_table1.py",
        outputs=("tables/table1.csv", "tables/table1.md", "tables/table1.tex"),
        args=lambda ctx: ["--slices", "slices", "--out-dir", "tables", "--profile", ctx.profile["name"]],
        deps=("slices",),
    ),
]
