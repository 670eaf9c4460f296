"""The pipeline's stages, in order. Adding a stage is one ``Stage(...)`` entry here.

Arguments are derived from the profile (``iusdiff/profiles.toml``); paths are relative to
the output folder, which is the scripts' working directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from iusdiff.errors import InputError
from iusdiff.pipeline import Context, Stage
from iusdiff.resect import mask_path, us_path
from iusdiff.weights import check_pretrained

PHANTOM_DIR = "phantom"
MODELS_DIR = "models"
SAMPLES_DIR = "samples/proposed"  # the two-step generator's pairs: fold{K}/{masks,images}/, manifest.csv
GENERATOR_STAGES = ("vae_image", "vae_mask", "ldm_mask", "ldm_ius", "sample")


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


def uses_pretrained(profile: dict) -> bool:
    """Whether a profile starts any generator model from SD-1.5 (the paper profile)."""
    return any(profile[section].get("pretrained", False) for section in ("vae_image", "ldm_ius"))


def pretrained_root(ctx: Context) -> str:
    """SD-1.5's location for a profile: a folder relative to the repository if it exists, else
    the setting itself (an absolute folder, or a Hub id already in the local HF cache)."""
    reference = ctx.profile["stable_diffusion"]
    local = ctx.repo / reference
    return str(local) if local.is_dir() else reference


def check_pretrained_weights(ctx: Context) -> None:
    """Before any work: SD-1.5 (VAE, UNet, text encoder, tokenizer) must be where the profile says."""
    if not uses_pretrained(ctx.profile):
        return
    try:
        check_pretrained(pretrained_root(ctx))
    except InputError as exc:
        raise InputError(
            f"profile '{ctx.profile['name']}' needs Stable Diffusion 1.5: {exc}. Put the diffusers-format "
            f"download (stable-diffusion-v1-5/stable-diffusion-v1-5) in {ctx.profile['stable_diffusion']} "
            "under the repository, or set 'stable_diffusion' in profiles.toml"
        ) from None


def _pretrained_args(ctx: Context, section: str) -> list[str]:
    return ["--pretrained", pretrained_root(ctx)] if ctx.profile[section].get("pretrained", False) else []


def _train_vae_args(kind: str) -> Callable[[Context], list[str]]:
    def args(ctx: Context) -> list[str]:
        return [
            "--kind", kind, "--slices", "slices", "--out", f"{MODELS_DIR}/vae_{kind}",
            "--profile", ctx.profile["name"], "--resume", *_pretrained_args(ctx, f"vae_{kind}"),
        ]

    return args


def _train_ldm_args(model: str, vae: str) -> Callable[[Context], list[str]]:
    def args(ctx: Context) -> list[str]:
        return [
            "--model", model, "--slices", "slices", "--vae", f"{MODELS_DIR}/{vae}", "--out", f"{MODELS_DIR}/ldm_{model}",
            "--profile", ctx.profile["name"], "--resume", *_pretrained_args(ctx, f"ldm_{model}"),
        ]

    return args


def _sample_args(ctx: Context) -> list[str]:
    return [
        "--slices", "slices",
        "--mask-vae", f"{MODELS_DIR}/vae_mask", "--mask-ldm", f"{MODELS_DIR}/ldm_mask",
        "--image-vae", f"{MODELS_DIR}/vae_image", "--ius-ldm", f"{MODELS_DIR}/ldm_ius",
        "--out", SAMPLES_DIR, "--profile", ctx.profile["name"], "--resume",
    ]


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
    # The two-step generator (SPEC §4). Each script loops over the five folds and writes
    # OUT/<stage>/fold{K}/; --resume skips finished folds and continues an interrupted one.
    Stage(
        name="vae_image",
        script="train_vae.py",
        outputs=(f"{MODELS_DIR}/vae_image",),
        args=_train_vae_args("image"),
        deps=("slices",),
        preflight=check_pretrained_weights,
    ),
    Stage(
        name="vae_mask",
        script="train_vae.py",
        outputs=(f"{MODELS_DIR}/vae_mask",),
        args=_train_vae_args("mask"),
        deps=("slices",),
    ),
    Stage(
        name="ldm_mask",
        script="train_ldm.py",
        outputs=(f"{MODELS_DIR}/ldm_mask",),
        args=_train_ldm_args("mask", "vae_mask"),
        deps=("slices", "vae_mask"),
    ),
    Stage(
        name="ldm_ius",
        script="train_ldm.py",
        outputs=(f"{MODELS_DIR}/ldm_ius",),
        args=_train_ldm_args("ius", "vae_image"),
        deps=("slices", "vae_image"),
    ),
    Stage(
        name="sample",
        script="sample.py",
        outputs=(SAMPLES_DIR,),
        args=_sample_args,
        deps=("slices", "vae_mask", "ldm_mask", "vae_image", "ldm_ius"),
    ),
]
