"""The pipeline's stages, in order. Adding a stage is one ``Stage(...)`` entry here.

Each stage names the settings sections it reads (``reads``); the runner hands a script those as
``--settings settings/<stage>.json`` and fingerprints them, so a changed key reruns only the
stages that read it and their dependents. The data stages (``takes_settings=False``) get theirs
as flags. Paths are relative to the output folder, the scripts' working directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from iusdiff.errors import InputError
from iusdiff.pipeline import Context, Stage
from iusdiff.resect import mask_path, us_path
from iusdiff.weights import MASK_UNET_DIR, MASK_VAE_DIR, SCHEDULER_DIR, TEXT_FILE, UNET_DIR, check_medsam, check_perceptual, check_pretrained

PHANTOM_DIR = "phantom"
CORPUS_DIR = "pretrain/corpus"  # the outside pretraining corpus (iusdiff.corpus), apart from the study data
BASE_DIR = "pretrain/base"      # the CPU profiles' pretrained base, SD-1.5's analogue
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


def check_real_data(ctx: Context) -> str | None:
    """Before any work: every case's US volume and mask must be where the profile says."""
    if is_phantom(ctx):
        return None
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
    return f"RESECT data: {len(ctx.profile['cases'])} cases in {ctx.resect_root} and {ctx.seg_root}"


def _cases(ctx: Context) -> str:
    return ",".join(str(c) for c in ctx.profile["cases"])


def builds_base(ctx: Context) -> bool:
    """Whether the profile pretrains its own base on the outside corpus (the CPU profiles) instead
    of starting from SD-1.5 (the paper profile)."""
    return "pretrain" in ctx.profile


def uses_pretrained(profile: dict) -> bool:
    """Whether a profile starts any generator model from SD-1.5 (the paper profile)."""
    return "pretrain" not in profile and any(profile[section]["pretrained"] for section in ("vae_image", "ldm_ius"))


def weights_root(ctx: Context) -> Path:
    """The folder the profile's weight settings are relative to (run_all.sh --weights)."""
    return ctx.weights if ctx.weights is not None else ctx.repo / "weights"


def pretrained_root(ctx: Context) -> str:
    """The base per-fold models start from: the run's own pretrained base (CPU profiles), or
    SD-1.5: a folder in the weights folder if it exists, else the setting itself (an absolute
    folder, or a Hub id already in the local HF cache)."""
    if builds_base(ctx):
        return BASE_DIR
    reference = ctx.profile["stable_diffusion"]
    local = weights_root(ctx) / reference
    return str(local) if local.is_dir() else reference


def check_pretrained_weights(ctx: Context) -> str | None:
    """Before any work: SD-1.5 (VAE, UNet, text encoder, tokenizer) must be where the profile says."""
    if not uses_pretrained(ctx.profile):
        return None
    try:
        return f"Stable Diffusion 1.5: {check_pretrained(pretrained_root(ctx))}"
    except InputError as exc:
        raise InputError(
            f"profile '{ctx.profile['name']}' needs Stable Diffusion 1.5: {exc}. Put the diffusers-format "
            f"download (stable-diffusion-v1-5/stable-diffusion-v1-5) at {weights_root(ctx) / ctx.profile['stable_diffusion']} "
            "(run_all.sh --weights DIR: the weights folder), or --set stable_diffusion=DIR"
        ) from None


def medsam_checkpoint(ctx: Context) -> Path:
    return weights_root(ctx) / ctx.profile["evaluate_images"]["medsam_checkpoint"]


def check_medsam_weights(ctx: Context) -> str | None:
    """Before any work: the MedSAM checkpoint of a profile that segments with MedSAM (Table 2's
    DSC/HD95 come last, after every training)."""
    if ctx.profile["evaluate_images"]["segmenter"] != "medsam":
        return None
    try:
        return f"MedSAM ViT-B: {check_medsam(medsam_checkpoint(ctx))}"
    except InputError as exc:
        raise InputError(
            f"profile '{ctx.profile['name']}' needs MedSAM for DSC/HD95: {exc} (run_all.sh --weights DIR: the weights "
            "folder), or --set evaluate_images.segmenter=standin"
        ) from None


def check_perceptual_weights(ctx: Context) -> str | None:
    """Before any work: VGG16 for the autoencoders' perceptual term (optional: its absence is the
    profile's recorded deviation, weights.weight_deviations)."""
    return check_perceptual(ctx.profile)


def _pretrained_args(ctx: Context, section: str) -> list[str]:
    return ["--pretrained", pretrained_root(ctx)] if ctx.profile[section]["pretrained"] else []


def _train_vae_args(kind: str) -> Callable[[Context], list[str]]:
    def args(ctx: Context) -> list[str]:
        return [
            "--kind", kind, "--slices", "slices", "--out", f"{MODELS_DIR}/vae_{kind}",
            "--resume", *_pretrained_args(ctx, f"vae_{kind}"),
        ]

    return args


def _train_ldm_args(model: str, vae: str) -> Callable[[Context], list[str]]:
    def args(ctx: Context) -> list[str]:
        return [
            "--model", model, "--slices", "slices", "--vae", f"{MODELS_DIR}/{vae}", "--out", f"{MODELS_DIR}/ldm_{model}",
            "--resume", *_pretrained_args(ctx, f"ldm_{model}"),
        ]

    return args


def _pretrain_args(script_model: list[str], part: str, vae: str | None = None) -> Callable[[Context], list[str]]:
    """A base model's training on the corpus: the per-fold script with the pretrain table."""
    def args(ctx: Context) -> list[str]:
        return [
            *script_model, "--slices", CORPUS_DIR, *(["--vae", f"pretrain/{vae}"] if vae else []),
            "--out", f"pretrain/{part}", "--section", f"pretrain.{part}", "--resume",
        ]

    return args


def _pretrain_stage(part: str, script: str, model: list[str], vae: str | None = None) -> Stage:
    return Stage(
        name=f"pretrain_{part}",
        reads=(f"pretrain.{part}",),
        script=script,
        outputs=(f"pretrain/{part}",),
        args=_pretrain_args(model, part, vae),
        deps=("corpus", *((f"pretrain_{vae}",) if vae else ())),
        enabled=builds_base,
        distributed=True,
    )


def _sample_args(ctx: Context) -> list[str]:
    return [
        "--slices", "slices",
        "--mask-vae", f"{MODELS_DIR}/vae_mask", "--mask-ldm", f"{MODELS_DIR}/ldm_mask",
        "--image-vae", f"{MODELS_DIR}/vae_image", "--ius-ldm", f"{MODELS_DIR}/ldm_ius",
        "--out", SAMPLES_DIR, "--resume",
    ]


def _downstream_args(ctx: Context) -> list[str]:
    return [
        "--slices", "slices", "--samples", SAMPLES_DIR, "--out", "downstream",
        "--fig-dir", "figures", "--table-dir", "tables", "--results", "results/fig9.csv",
    ]


STAGES: list[Stage] = [
    Stage(
        name="phantom",
        reads=('phantom',),
        takes_settings=False,
        script="make_phantom.py",
        uses_torch=False,
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
        takes_settings=False,
        script="prepare_data.py",
        uses_torch=False,
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
    # The CPU profiles' SD-1.5 analogue: an outside corpus of phantom subjects in no split, the
    # base models pretrained on it once, assembled into pretrain/base; per-fold models start from it.
    Stage(
        name="corpus",
        reads=('corpus', 'phantom'),
        takes_settings=False,
        script="make_corpus.py",
        outputs=(CORPUS_DIR, "figures/corpus_montage.png"),
        args=lambda ctx: [
            "--out", CORPUS_DIR, "--subjects", ctx.profile["corpus"]["subjects"], "--seed", ctx.profile["corpus"]["seed"],
            "--scale", ctx.profile["phantom"]["scale"], "--size", ctx.profile["size"],
            "--validation-subjects", ctx.profile["corpus"]["validation_subjects"], "--montage", "figures/corpus_montage.png",
            "--resume",
        ],
        enabled=builds_base,
    ),
    _pretrain_stage("vae_image", "train_vae.py", ["--kind", "image"]),
    _pretrain_stage("vae_mask", "train_vae.py", ["--kind", "mask"]),
    _pretrain_stage("ldm_image", "train_ldm.py", ["--model", "image"], vae="vae_image"),
    _pretrain_stage("ldm_mask", "train_ldm.py", ["--model", "mask"], vae="vae_mask"),
    # The base in two groups, so the per-fold mask models finetune while the base iUS LDM (the
    # longest pretraining) still runs: the image parts (SD-1.5's analogue) and the mask parts.
    Stage(
        name="pretrain_mask",
        takes_settings=False,
        script="make_base.py",
        outputs=tuple(f"{BASE_DIR}/{part}" for part in (MASK_VAE_DIR, MASK_UNET_DIR, "base_mask.json")),
        args=lambda ctx: ["--vae-mask", "pretrain/vae_mask", "--unet-mask", "pretrain/ldm_mask", "--corpus", CORPUS_DIR, "--out", BASE_DIR],
        deps=("corpus", "pretrain_vae_mask", "pretrain_ldm_mask"),
        enabled=builds_base,
    ),
    Stage(
        name="pretrain",
        takes_settings=False,
        script="make_base.py",
        outputs=tuple(f"{BASE_DIR}/{part}" for part in ("vae", UNET_DIR, TEXT_FILE, SCHEDULER_DIR, "base.json")),
        args=lambda ctx: ["--vae", "pretrain/vae_image", "--unet", "pretrain/ldm_image", "--corpus", CORPUS_DIR, "--out", BASE_DIR],
        deps=("corpus", "pretrain_vae_image", "pretrain_ldm_image"),
        enabled=builds_base,
    ),
    Stage(
        name="table1",
        reads=(),
        script="make_table1.py",
        uses_torch=False,
        outputs=("tables/table1.csv", "tables/table1.md", "tables/table1.tex", "results/table1.csv"),
        args=lambda ctx: ["--slices", "slices", "--out-dir", "tables"],
        deps=("slices",),
    ),
    # The two-step generator (SPEC §4): one instance per fold ("vae_image@fold3"), so folds can
    # run as separate jobs; each writes OUT/<stage>/fold{K}/ and resumes an interrupted training.
    Stage(
        name="vae_image",
        reads=('vae_image',),
        script="train_vae.py",
        outputs=(f"{MODELS_DIR}/vae_image/fold{{fold}}",),
        args=_train_vae_args("image"),
        deps=("slices", "pretrain"),
        preflight=check_pretrained_weights,
        per_fold=True,
        distributed=True,
    ),
    Stage(
        name="vae_mask",
        reads=('vae_mask',),
        script="train_vae.py",
        outputs=(f"{MODELS_DIR}/vae_mask/fold{{fold}}",),
        args=_train_vae_args("mask"),
        deps=("slices", "pretrain_mask"),
        preflight=check_perceptual_weights,  # for all three autoencoders: one start-up check per run
        per_fold=True,
        distributed=True,
    ),
    Stage(
        name="ldm_mask",
        reads=('ldm_mask',),
        script="train_ldm.py",
        outputs=(f"{MODELS_DIR}/ldm_mask/fold{{fold}}",),
        args=_train_ldm_args("mask", "vae_mask"),
        deps=("slices", "vae_mask", "pretrain_mask"),
        per_fold=True,
        distributed=True,
    ),
    Stage(
        name="ldm_ius",
        reads=('ldm_ius',),
        script="train_ldm.py",
        outputs=(f"{MODELS_DIR}/ldm_ius/fold{{fold}}",),
        args=_train_ldm_args("ius", "vae_image"),
        deps=("slices", "vae_image", "pretrain"),
        per_fold=True,
        distributed=True,
    ),
    Stage(
        name="sample",
        reads=('sampling',),
        script="sample.py",
        outputs=(f"{SAMPLES_DIR}/fold{{fold}}",),
        args=_sample_args,
        deps=("slices", "vae_mask", "ldm_mask", "vae_image", "ldm_ius"),
        per_fold=True,
    ),
    # --- baselines (issue 5) go here ---
    # Pix2Pix baseline: mask -> image, then run on the proposed model's first N masks per fold.
    Stage(
        name="pix2pix",
        reads=('pix2pix',),
        script="train_pix2pix.py",
        outputs=(f"{MODELS_DIR}/pix2pix/fold{{fold}}",),
        args=lambda ctx: [
            "--slices", "slices", "--out", f"{MODELS_DIR}/pix2pix", "--resume",
        ],
        deps=("slices",),
        per_fold=True,
        distributed=False,
    ),
    Stage(
        name="sample_pix2pix",
        reads=('pix2pix',),
        script="sample_pix2pix.py",
        outputs=("samples/pix2pix/fold{fold}",),
        args=lambda ctx: [
            "--slices", "slices", "--models", f"{MODELS_DIR}/pix2pix", "--masks", SAMPLES_DIR,
            "--out", "samples/pix2pix", "--resume",
        ],
        deps=("slices", "pix2pix", "sample"),
        per_fold=True,
    ),
    # One-step baseline: a joint (image, mask) autoencoder and an unconditional LDM on its latent.
    Stage(
        name="vae_joint",
        reads=('vae_joint',),
        script="train_vae.py",
        outputs=(f"{MODELS_DIR}/vae_joint/fold{{fold}}",),
        args=_train_vae_args("joint"),
        deps=("slices", "pretrain"),
        preflight=check_pretrained_weights,
        per_fold=True,
        distributed=True,
    ),
    Stage(
        name="ldm_onestep",
        reads=('ldm_onestep',),
        script="train_ldm.py",
        outputs=(f"{MODELS_DIR}/ldm_onestep/fold{{fold}}",),
        args=_train_ldm_args("onestep", "vae_joint"),
        deps=("slices", "vae_joint", "pretrain"),
        per_fold=True,
        distributed=True,
    ),
    Stage(
        name="sample_onestep",
        reads=('sampling',),
        script="sample.py",
        outputs=("samples/onestep/fold{fold}",),
        args=lambda ctx: [
            "--model", "onestep", "--slices", "slices",
            "--joint-vae", f"{MODELS_DIR}/vae_joint", "--onestep-ldm", f"{MODELS_DIR}/ldm_onestep",
            "--out", "samples/onestep", "--resume",
        ],
        deps=("slices", "vae_joint", "ldm_onestep"),
        per_fold=True,
    ),
    # ControlNet baseline: phase A (UNet on iUS) and phase B (ControlNet, UNet frozen) on the
    # proposed model's image VAE; it paints the proposed model's masks.
    Stage(
        name="controlnet",
        reads=('controlnet',),
        script="train_controlnet.py",
        outputs=(f"{MODELS_DIR}/controlnet/fold{{fold}}",),
        args=lambda ctx: [
            "--slices", "slices", "--vae", f"{MODELS_DIR}/vae_image", "--out", f"{MODELS_DIR}/controlnet",
            "--resume", *_pretrained_args(ctx, "controlnet"),
        ],
        deps=("slices", "vae_image", "pretrain"),
        preflight=check_pretrained_weights,
        per_fold=True,
        distributed=True,
    ),
    Stage(
        name="sample_controlnet",
        reads=('sampling',),
        script="sample.py",
        outputs=("samples/controlnet/fold{fold}",),
        args=lambda ctx: [
            "--model", "controlnet", "--slices", "slices", "--image-vae", f"{MODELS_DIR}/vae_image",
            "--controlnet", f"{MODELS_DIR}/controlnet", "--masks", SAMPLES_DIR,
            "--out", "samples/controlnet", "--resume",
        ],
        deps=("slices", "controlnet", "vae_image", "sample"),
        per_fold=True,
    ),
    # --- evaluation ---
    Stage(
        name="evaluate_masks",
        reads=(),
        script="evaluate_masks.py",
        uses_torch=False,
        outputs=(
            *(f"tables/table{n}.{ext}" for n in (3, 4) for ext in ("csv", "md", "tex")),
            *(f"figures/fig{n}.{ext}" for n in (4, 6) for ext in ("png", "pdf")),
            "metrics/masks",
            "results/table3_4.csv",
        ),
        args=lambda ctx: [
            "--slices", "slices", "--generated", SAMPLES_DIR,
            "--tables", "tables", "--figures", "figures", "--metrics", "metrics/masks",
            "--results", "results/table3_4.csv",
        ],
        deps=("slices", "sample"),
    ),
    Stage(
        name="downstream",
        reads=('downstream',),
        script="downstream_nnunet.py",
        outputs=(
            *(f"downstream/{name}" for name in ("entries.csv", "per_image.csv", "summary.json", "options.json", "predictions")),
            "downstream/nnunet/nnUNet_preprocessed/Dataset901_IUS/splits_final.json",
            "figures/fig9.png", "figures/fig9.pdf",
            "tables/fig9.csv", "tables/fig9.md", "tables/fig9.tex",
            "results/fig9.csv",
        ),
        volatile=("downstream/nnunet", "downstream/logs"),
        args=_downstream_args,
        deps=("slices", "sample"),
    ),
    # --- Table 2 and Figs. 3, 5, 7, 8, 10 (issue 6) go here ---
    Stage(
        name="evaluate_images",
        reads=('evaluate_images',),
        script="evaluate_images.py",
        outputs=(
            *(f"tables/table2.{ext}" for ext in ("csv", "md", "tex")),
            "figures/fig8.png", "figures/fig8.pdf", "metrics/images", "results/table2.csv",
        ),
        volatile=("logs/evaluate_images",),
        args=lambda ctx: [
            "--slices", "slices", "--samples", "samples", "--models", "proposed,pix2pix,controlnet,onestep",
            "--tables", "tables", "--figures", "figures", "--metrics", "metrics/images",
            "--results", "results/table2.csv", "--downstream", "downstream", "--logs", "logs/evaluate_images",
            "--image-vae", f"{MODELS_DIR}/vae_image",
            *(["--medsam-checkpoint", str(medsam_checkpoint(ctx))] if "medsam_checkpoint" in ctx.profile["evaluate_images"] else []),
        ],
        deps=("slices", "vae_image", "sample", "sample_pix2pix", "sample_controlnet", "sample_onestep", "downstream"),
        preflight=check_medsam_weights,
    ),
    Stage(
        name="figures",
        reads=(),
        script="make_figures.py",
        uses_torch=False,
        outputs=(
            *(f"figures/{name}.{ext}" for name in ("fig3", "fig5", "fig7", "fig10", "contact_sheet") for ext in ("png", "pdf")),
            "metrics/figures",
        ),
        args=lambda ctx: [
            "--slices", "slices", "--samples", "samples", "--figures", "figures",
            "--options", "metrics/figures/options.json",
        ],
        deps=("slices", "sample", "sample_pix2pix", "sample_controlnet", "sample_onestep"),
    ),
    Stage(
        name="report",
        reads=(),
        script="make_report.py",
        outputs=(),
        volatile=("report.md",),
        args=lambda ctx: ["--results", "results", "--out", "report.md"],
        deps=("table1", "evaluate_masks", "downstream", "evaluate_images", "figures"),
    ),
]
