"""The pipeline's stages, in order: the table ``STAGES`` at the end, one row per stage (its name,
script, the settings sections it reads, the stages it depends on, what it writes, its arguments
and its flags). Adding a stage is one row there, its arguments one small function above it.

Each stage names the settings sections it reads (``reads``); the runner hands a script those as
``--settings settings/<stage>.json`` and fingerprints them, so a changed key reruns only the
stages that read it and their dependents. The data stages (``takes_settings=False``) get theirs
as flags. Paths come from iusdiff.outputs.layout and are relative to the output folder, the scripts'
working directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from iusdiff.data.resect import check_case_files
from iusdiff.errors import InputError
from iusdiff.outputs.layout import (
    BASE_DIR,
    BASE_MASK_RECORD,
    BASE_RECORD,
    CORPUS_DIR,
    DOWNSTREAM_DIR,
    FIGURES_DIR,
    OPTIONS,
    PHANTOM_DIR,
    REPORT_FILE,
    RESECT_DIR,
    RESECT_SEG_DIR,
    RESULTS_DIR,
    SAMPLES_DIR,
    SAMPLES_ROOT,
    SLICES_DIR,
    TABLES_DIR,
    figure_files,
    logs_dir,
    metrics_dir,
    models_dir,
    per_fold,
    pretrain_dir,
    result_file,
    samples_dir,
    table_files,
)
from iusdiff.pipeline.runner import Context, Stage, plan_pipeline
from iusdiff.weights import MASK_UNET_DIR, MASK_VAE_DIR, SCHEDULER_DIR, TEXT_FILE, UNET_DIR, check_medsam, check_perceptual, check_pretrained

GENERATOR_STAGES = ("vae_image", "vae_mask", "ldm_mask", "ldm_ius", "sample")


def is_phantom(ctx: Context) -> bool:
    return ctx.profile["data"] == "phantom"


def data_roots(profile: dict, out_phantom: str = PHANTOM_DIR) -> tuple[str, str]:
    """Where the slices stage reads RESECT-layout data for a profile (before CLI overrides)."""
    if profile["data"] == "phantom":
        return f"{out_phantom}/{RESECT_DIR}", f"{out_phantom}/{RESECT_SEG_DIR}"
    return profile["resect_root"], profile["seg_root"]


def check_real_data(ctx: Context) -> str | None:
    """Before any work: every case's US volume and mask must be where the profile says, open,
    and hold all their voxels (iusdiff.data.resect.check_nifti)."""
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
        check_case_files(ctx.resect_root, ctx.seg_root, case)
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


# ---------------------------------------------------------------------------------------------
# Arguments of each stage's script (paths from iusdiff.outputs.layout, relative to OUT)


def _pretrained_args(ctx: Context, section: str) -> list[str]:
    return ["--pretrained", pretrained_root(ctx)] if ctx.profile[section]["pretrained"] else []


def _phantom_args(ctx: Context) -> list[str]:
    phantom = ctx.profile["phantom"]
    return [
        "--out", PHANTOM_DIR, "--seed", phantom["seed"], "--scale", phantom["scale"], "--cases", _cases(ctx),
        "--montage", PHANTOM_MONTAGE,
    ]


def _slices_args(ctx: Context) -> list[str]:
    return [
        "--resect-root", ctx.resect_root, "--seg-root", ctx.seg_root, "--out", SLICES_DIR,
        "--size", ctx.profile["size"], "--cases", _cases(ctx),
    ]


def _corpus_args(ctx: Context) -> list[str]:
    corpus = ctx.profile["corpus"]
    return [
        "--out", CORPUS_DIR, "--subjects", corpus["subjects"], "--seed", corpus["seed"],
        "--scale", ctx.profile["phantom"]["scale"], "--size", ctx.profile["size"],
        "--validation-subjects", corpus["validation_subjects"], "--montage", CORPUS_MONTAGE, "--resume",
    ]


def _pretrain_args(script_model: list[str], part: str, vae: str | None = None) -> Callable[[Context], list[str]]:
    """A base model's training on the corpus: the per-fold script with the pretrain table."""
    def args(ctx: Context) -> list[str]:
        return [
            *script_model, "--slices", CORPUS_DIR, *(["--vae", pretrain_dir(vae)] if vae else []),
            "--out", pretrain_dir(part), "--section", f"pretrain.{part}", "--resume",
        ]

    return args


def _base_args(vae_option: str, unet_option: str, kind: str) -> Callable[[Context], list[str]]:
    """make_base.py on one group of the base: the pretrained autoencoder and LDM of ``kind``."""
    def args(ctx: Context) -> list[str]:
        vae, unet = pretrain_dir(f"vae_{kind}"), pretrain_dir(f"ldm_{kind}")
        return [vae_option, vae, unet_option, unet, "--corpus", CORPUS_DIR, "--out", BASE_DIR]

    return args


def _table1_args(ctx: Context) -> list[str]:
    return ["--slices", SLICES_DIR, "--out-dir", TABLES_DIR]


def _vae_args(kind: str) -> Callable[[Context], list[str]]:
    def args(ctx: Context) -> list[str]:
        return [
            "--kind", kind, "--slices", SLICES_DIR, "--out", models_dir(f"vae_{kind}"),
            "--resume", *_pretrained_args(ctx, f"vae_{kind}"),
        ]

    return args


def _ldm_args(model: str, vae: str) -> Callable[[Context], list[str]]:
    def args(ctx: Context) -> list[str]:
        return [
            "--model", model, "--slices", SLICES_DIR, "--vae", models_dir(vae), "--out", models_dir(f"ldm_{model}"),
            "--resume", *_pretrained_args(ctx, f"ldm_{model}"),
        ]

    return args


def _sample_args(ctx: Context) -> list[str]:
    return [
        "--slices", SLICES_DIR,
        "--mask-vae", models_dir("vae_mask"), "--mask-ldm", models_dir("ldm_mask"),
        "--image-vae", models_dir("vae_image"), "--ius-ldm", models_dir("ldm_ius"),
        "--out", SAMPLES_DIR, "--resume",
    ]


def _pix2pix_args(ctx: Context) -> list[str]:
    return ["--slices", SLICES_DIR, "--out", models_dir("pix2pix"), "--resume"]


def _sample_pix2pix_args(ctx: Context) -> list[str]:
    return [
        "--slices", SLICES_DIR, "--models", models_dir("pix2pix"), "--masks", SAMPLES_DIR,
        "--out", samples_dir("pix2pix"), "--resume",
    ]


def _sample_onestep_args(ctx: Context) -> list[str]:
    return [
        "--model", "onestep", "--slices", SLICES_DIR,
        "--joint-vae", models_dir("vae_joint"), "--onestep-ldm", models_dir("ldm_onestep"),
        "--out", samples_dir("onestep"), "--resume",
    ]


def _controlnet_args(ctx: Context) -> list[str]:
    return [
        "--slices", SLICES_DIR, "--vae", models_dir("vae_image"), "--out", models_dir("controlnet"),
        "--resume", *_pretrained_args(ctx, "controlnet"),
    ]


def _sample_controlnet_args(ctx: Context) -> list[str]:
    return [
        "--model", "controlnet", "--slices", SLICES_DIR, "--image-vae", models_dir("vae_image"),
        "--controlnet", models_dir("controlnet"), "--masks", SAMPLES_DIR,
        "--out", samples_dir("controlnet"), "--resume",
    ]


def _evaluate_masks_args(ctx: Context) -> list[str]:
    return [
        "--slices", SLICES_DIR, "--generated", SAMPLES_DIR,
        "--tables", TABLES_DIR, "--figures", FIGURES_DIR, "--metrics", metrics_dir("masks"),
        "--results", result_file("table3_4"),
    ]


def _downstream_args(ctx: Context) -> list[str]:
    return [
        "--slices", SLICES_DIR, "--samples", SAMPLES_DIR, "--out", DOWNSTREAM_DIR,
        "--fig-dir", FIGURES_DIR, "--table-dir", TABLES_DIR, "--results", result_file("fig9"),
    ]


def _medsam_args(ctx: Context) -> list[str]:
    settings = ctx.profile["evaluate_images"]
    return ["--medsam-checkpoint", str(medsam_checkpoint(ctx))] if "medsam_checkpoint" in settings else []


def _evaluate_images_args(ctx: Context) -> list[str]:
    return [
        "--slices", SLICES_DIR, "--samples", SAMPLES_ROOT, "--models", "proposed,pix2pix,controlnet,onestep",
        "--tables", TABLES_DIR, "--figures", FIGURES_DIR, "--metrics", metrics_dir("images"),
        "--results", result_file("table2"), "--downstream", DOWNSTREAM_DIR, "--logs", logs_dir("evaluate_images"),
        "--image-vae", models_dir("vae_image"), *_medsam_args(ctx),
    ]


def _figures_args(ctx: Context) -> list[str]:
    return [
        "--slices", SLICES_DIR, "--samples", SAMPLES_ROOT, "--figures", FIGURES_DIR,
        "--options", f"{metrics_dir('figures')}/{OPTIONS}",
    ]


def _report_args(ctx: Context) -> list[str]:
    return ["--results", RESULTS_DIR, "--out", REPORT_FILE]


# ---------------------------------------------------------------------------------------------
# What each stage owns (relative to OUT)


def _in_base(*parts: str) -> tuple[str, ...]:
    return tuple(f"{BASE_DIR}/{part}" for part in parts)


def _models(model: str) -> tuple[str]:
    """A per-fold training's output: ``models/<model>/fold{fold}``."""
    return (per_fold(models_dir(model)),)


def _samples(model: str) -> tuple[str]:
    """A per-fold sampling's output: ``samples/<model>/fold{fold}``."""
    return (per_fold(samples_dir(model)),)


PHANTOM_MONTAGE, CORPUS_MONTAGE = f"{FIGURES_DIR}/phantom_montage.png", f"{FIGURES_DIR}/corpus_montage.png"
PHANTOM_OUTPUTS, CORPUS_OUTPUTS = (PHANTOM_DIR, PHANTOM_MONTAGE), (CORPUS_DIR, CORPUS_MONTAGE)
BASE_OUTPUTS = _in_base("vae", UNET_DIR, TEXT_FILE, SCHEDULER_DIR, BASE_RECORD)  # SD-1.5's analogue
BASE_MASK_OUTPUTS = _in_base(MASK_VAE_DIR, MASK_UNET_DIR, BASE_MASK_RECORD)
TABLE1_OUTPUTS = (*table_files("table1"), result_file("table1"))
MASK_METRICS_OUTPUTS = (*table_files("table3", "table4"), *figure_files("fig4", "fig6"), metrics_dir("masks"), result_file("table3_4"))
DOWNSTREAM_OUTPUTS = (
    *(f"{DOWNSTREAM_DIR}/{name}" for name in ("entries.csv", "per_image.csv", "summary.json", OPTIONS, "predictions", "models")),
    f"{DOWNSTREAM_DIR}/nnunet/nnUNet_preprocessed/Dataset901_IUS/splits_final.json",
    *figure_files("fig9"), *table_files("fig9"), result_file("fig9"),
)
IMAGE_METRICS_OUTPUTS = (*table_files("table2"), *figure_files("fig8"), metrics_dir("images"), result_file("table2"))
FIGURES_OUTPUTS = (*figure_files("fig3", "fig5", "fig7", "fig10", "contact_sheet"), metrics_dir("figures"))
# Written but not checksummed: nnU-Net's own folders and logs, the segmenters' logs, the report.
DOWNSTREAM_VOLATILE = {"volatile": (f"{DOWNSTREAM_DIR}/nnunet", f"{DOWNSTREAM_DIR}/logs")}
IMAGE_METRICS_VOLATILE = {"volatile": (logs_dir("evaluate_images"),)}
REPORT_VOLATILE = {"volatile": (REPORT_FILE,)}

# ---------------------------------------------------------------------------------------------
# The table

# Flags of its last column (Stage's defaults otherwise).
AS_FLAGS = {"takes_settings": False}  # settings as command-line flags, not --settings FILE
DATA = {**AS_FLAGS, "uses_torch": False}
ON_CORPUS = {**AS_FLAGS, "enabled": builds_base}  # the CPU profiles' base (SD-1.5's analogue)
PRETRAINING = {"enabled": builds_base, "distributed": True}
NO_TORCH = {"uses_torch": False}
PER_FOLD = {"per_fold": True}  # one instance per fold, "<name>@fold{K}", "{fold}" filled in its outputs
TRAINING = {**PER_FOLD, "distributed": True}  # may run under IUSDIFF_LAUNCHER


def _row(name: str, script: str, reads: str, deps: str, outputs: tuple[str, ...], args: Callable[[Context], list[str]],
         **flags) -> Stage:
    """One row of the table; ``reads`` and ``deps`` are space-separated names."""
    return Stage(name=name, script=script, reads=tuple(reads.split()), deps=tuple(deps.split()), outputs=outputs, args=args, **flags)


def _pretrain(part: str, script: str, model: list[str], vae: str | None = None) -> Stage:
    """A base model trained on the corpus (encoding with the base autoencoder ``vae``)."""
    deps = f"corpus pretrain_{vae}" if vae else "corpus"
    return _row(f"pretrain_{part}", script, f"pretrain.{part}", deps, (pretrain_dir(part),), _pretrain_args(model, part, vae), **PRETRAINING)


SAMPLE_SETS = "sample sample_pix2pix sample_controlnet sample_onestep"  # every model's generated pairs
RESULTS = "table1 evaluate_masks downstream evaluate_images figures"  # every stage the report reads

STAGES: list[Stage] = [
    #    name                 script                  reads              deps
    #    outputs                  args                                              flags
    _row("phantom",           "make_phantom.py",      "phantom",         "",
         PHANTOM_OUTPUTS,         _phantom_args,                                    **DATA, enabled=is_phantom),
    _row("slices",            "prepare_data.py",      "",                "phantom",
         (SLICES_DIR,),           _slices_args,                                     **DATA, preflight=check_real_data),
    # The CPU profiles' SD-1.5 analogue: an outside corpus of phantom subjects in no split, the
    # base models pretrained on it once, assembled into pretrain/base; per-fold models start from it.
    _row("corpus",            "make_corpus.py",       "corpus phantom",  "",
         CORPUS_OUTPUTS,          _corpus_args,                                     **ON_CORPUS),
    _pretrain("vae_image", "train_vae.py", ["--kind", "image"]),
    _pretrain("vae_mask", "train_vae.py", ["--kind", "mask"]),
    _pretrain("ldm_image", "train_ldm.py", ["--model", "image"], vae="vae_image"),
    _pretrain("ldm_mask", "train_ldm.py", ["--model", "mask"], vae="vae_mask"),
    # The base in two groups, so the per-fold mask models finetune while the base iUS LDM (the
    # longest pretraining) still runs: the image parts (SD-1.5's analogue) and the mask parts.
    _row("pretrain_mask",     "make_base.py",         "",                "corpus pretrain_vae_mask pretrain_ldm_mask",
         BASE_MASK_OUTPUTS,       _base_args("--vae-mask", "--unet-mask", "mask"),  **ON_CORPUS),
    _row("pretrain",          "make_base.py",         "",                "corpus pretrain_vae_image pretrain_ldm_image",
         BASE_OUTPUTS,            _base_args("--vae", "--unet", "image"),           **ON_CORPUS),
    _row("table1",            "make_table1.py",       "",                "slices",
         TABLE1_OUTPUTS,          _table1_args,                                     **NO_TORCH),
    # The two-step generator (SPEC §4): one instance per fold ("vae_image@fold3"), so folds can
    # run as separate jobs; each writes OUT/<stage>/fold{K}/ and resumes an interrupted training.
    # The autoencoders check their start-up weights (the perceptual term's: once per run, for all three).
    _row("vae_image",         "train_vae.py",         "vae_image",       "slices pretrain",
         _models("vae_image"),    _vae_args("image"),                               **TRAINING, preflight=check_pretrained_weights),
    _row("vae_mask",          "train_vae.py",         "vae_mask",        "slices pretrain_mask",
         _models("vae_mask"),     _vae_args("mask"),                                **TRAINING, preflight=check_perceptual_weights),
    _row("ldm_mask",          "train_ldm.py",         "ldm_mask",        "slices vae_mask pretrain_mask",
         _models("ldm_mask"),     _ldm_args("mask", "vae_mask"),                    **TRAINING),
    _row("ldm_ius",           "train_ldm.py",         "ldm_ius",         "slices vae_image pretrain",
         _models("ldm_ius"),      _ldm_args("ius", "vae_image"),                    **TRAINING),
    _row("sample",            "sample.py",            "sampling",        "slices vae_mask ldm_mask vae_image ldm_ius",
         _samples("proposed"),    _sample_args,                                     **PER_FOLD),
    # Pix2Pix baseline: mask -> image, then run on the proposed model's first N masks per fold.
    _row("pix2pix",           "train_pix2pix.py",     "pix2pix",         "slices",
         _models("pix2pix"),      _pix2pix_args,                                    **PER_FOLD),
    _row("sample_pix2pix",    "sample_pix2pix.py",    "pix2pix",         "slices pix2pix sample",
         _samples("pix2pix"),     _sample_pix2pix_args,                             **PER_FOLD),
    # One-step baseline: a joint (image, mask) autoencoder and an unconditional LDM on its latent.
    _row("vae_joint",         "train_vae.py",         "vae_joint",       "slices pretrain",
         _models("vae_joint"),    _vae_args("joint"),                               **TRAINING, preflight=check_pretrained_weights),
    _row("ldm_onestep",       "train_ldm.py",         "ldm_onestep",     "slices vae_joint pretrain",
         _models("ldm_onestep"),  _ldm_args("onestep", "vae_joint"),                **TRAINING),
    _row("sample_onestep",    "sample.py",            "sampling",        "slices vae_joint ldm_onestep",
         _samples("onestep"),     _sample_onestep_args,                             **PER_FOLD),
    # ControlNet baseline: phase A (UNet on iUS) and phase B (ControlNet, UNet frozen) on the
    # proposed model's image VAE; it paints the proposed model's masks.
    _row("controlnet",        "train_controlnet.py",  "controlnet",      "slices vae_image pretrain",
         _models("controlnet"),   _controlnet_args,                                 **TRAINING, preflight=check_pretrained_weights),
    _row("sample_controlnet", "sample.py",            "sampling",        "slices controlnet vae_image sample",
         _samples("controlnet"),  _sample_controlnet_args,                          **PER_FOLD),
    # Evaluation: Tables 2-4, Figs. 3-10 and the report.
    _row("evaluate_masks",    "evaluate_masks.py",    "",                "slices sample",
         MASK_METRICS_OUTPUTS,    _evaluate_masks_args,                             **NO_TORCH),
    _row("downstream",        "downstream_nnunet.py", "downstream",      "slices sample",
         DOWNSTREAM_OUTPUTS,      _downstream_args,                                 **DOWNSTREAM_VOLATILE),
    _row("evaluate_images",   "evaluate_images.py",   "evaluate_images", f"slices vae_image {SAMPLE_SETS} downstream",
         IMAGE_METRICS_OUTPUTS,   _evaluate_images_args,                            **IMAGE_METRICS_VOLATILE, preflight=check_medsam_weights),
    _row("figures",           "make_figures.py",      "",                f"slices {SAMPLE_SETS}",
         FIGURES_OUTPUTS,         _figures_args,                                    **NO_TORCH),
    _row("report",            "make_report.py",       "",                RESULTS,
         (),                      _report_args,                                     **REPORT_VOLATILE),
]


RENDERING = ("table1", "evaluate_masks", "figures", "report")  # stages that only redraw from finished intermediates


def check_cached(ctx: Context, folds: Sequence[int], fold: int | None, only: str | None) -> None:
    """Refuse a run that would do more than redraw tables and figures, naming the first stage
    that would run and why."""
    heavy = [(name, why) for name, why in plan_pipeline(ctx, STAGES, folds, fold=fold, only=only)
             if why is not None and name.split("@")[0] not in RENDERING]
    if heavy:
        name, why = heavy[0]
        raise InputError(f"{ctx.out}: no finished run to draw from: {len(heavy)} stage(s) beyond tables and figures would "
                         f"run, first '{name}' ({why}); run `make repro` first (its time: the README's 'Two commands')")
