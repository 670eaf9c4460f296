"""The settings schema: every section a profile may hold, its fields, their types and the values
that never change between profiles (one comment each). Profiles (``iusdiff/pipeline/profiles/*.toml``)
state only what differs from here: ``default.toml`` whole, the others as ``inherit`` deltas.

Resolution (:func:`resolve`) gives the nested dict the runner and the scripts see: each training
section carries its effective ``augmentation`` (the shared table under the section's own
entries) and each ControlNet phase the ControlNet's shared keys under its own. An unknown
section or key, or a value of the wrong type, is an :class:`InputError` naming the file, the
section and the key; so is a ``--set`` that names no field.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

from iusdiff.errors import InputError

PROFILE_DIR = "profiles"
SCHEMA = "schema"  # the source of a value that no profile file sets
REQUIRED = dataclasses.MISSING


@dataclass(frozen=True)
class Augmentation:
    """Paper §3.4 with the authors' ranges; each transform applied with probability ``p``."""

    rotation_deg: float = 30.0  # ± degrees
    translate_fraction: float = 0.1  # ± fraction of the side (0.1 = 25.6 px at 256 px)
    hflip: bool = True  # the paper's flips
    vflip: bool = False  # the authors' loader also flips vertically; iUS has its probe on top
    brightness: float = 0.5  # ± relative change
    contrast: float = 0.5  # ± relative change
    gamma: float = 0.5  # ± change of the gamma exponent
    p: float = 0.5  # probability of each transform


@dataclass(frozen=True)
class Profile:
    """A profile's top-level keys: its data, size and where its inputs live."""

    description: str  # one line, shown by --show-settings
    data: Literal["phantom", "resect"]  # the embedded phantom, or RESECT + RESECT-SEG
    cases: Union[Literal["all"], list[int]]  # RESECT case numbers, or "all" 23
    size: int  # slice side in pixels
    folds: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3, 4, 5])  # the paper's folds a run covers
    threads: int = 0  # CPU threads per stage process (pinned: checksums do not depend on the core count); 0 = not pinned
    base: Literal["corpus", "stable_diffusion"] = "corpus"  # what per-fold models start from: a base pretrained in the run, or SD-1.5
    resect_root: str = "data/RESECT"  # RESECT root, relative to the repository (run_all.sh --resect-root wins)
    seg_root: str = "data/RESECT_segmentation"  # RESECT-SEG root, likewise
    stable_diffusion: str = "stable-diffusion-v1-5"  # SD-1.5 in diffusers format: a folder in the weights folder, an absolute folder or a cached Hub id


@dataclass(frozen=True)
class Phantom:
    seed: int = 0  # the phantom's random stream
    scale: float = 1.0  # voxel-count scale of the volumes (smoke: half)


@dataclass(frozen=True)
class Corpus:
    """The outside pretraining corpus: phantom subjects 1001+, in no split (iusdiff.data.corpus)."""

    subjects: int  # corpus subjects
    validation_subjects: int  # subjects that pick the base models' best checkpoints
    seed: int = 1  # the corpus's random stream


@dataclass(frozen=True, kw_only=True)
class Training:
    """What every generator training (train_vae.py, train_ldm.py) is told."""

    seed: int  # per-fold seeds derive from it
    batch_size: int  # per process
    lr: float  # AdamW learning rate
    validation_steps: int  # validate every N steps
    checkpointing_steps: int  # resumable checkpoint every N steps
    steps: int | None = None  # optimisation steps (or epochs)
    epochs: float | None = None  # passes over the fold's training images (or steps)
    pretrained: bool = False  # start from the base's / SD-1.5's weights instead of from scratch
    block_out_channels: list[int] | None = None  # from scratch only: channels per level
    layers_per_block: int | None = None  # from scratch only
    norm_num_groups: int | None = None  # from scratch only
    warmup_steps: int = 0  # linear warm-up
    lr_schedule: Literal["constant", "cosine"] = "constant"  # after warm-up
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # autocast; weights stay fp32
    augment: bool = True  # augment training pairs
    augmentation: dict | None = None  # this section's [augmentation] instead of the shared one's
    keep_checkpoints: int = 1  # checkpoints kept on disk


@dataclass(frozen=True, kw_only=True)
class Vae(Training):
    """An AutoencoderKL (train_vae.py): image, mask or joint (one-step baseline)."""

    kl_weight: float  # KL term weight
    adversarial_weight: float  # PatchGAN hinge weight (adaptive, as taming's); 0 = off
    disc_start: int  # step the adversarial term starts at
    disc_channels: int  # PatchGAN width
    disc_layers: int  # PatchGAN depth
    latent_channels: int = 4  # from scratch only (SD's VAE: 4)
    perceptual_weight: float = 1.0  # LPIPS term (off without VGG16 weights: a recorded deviation)
    spectral_weight: float = 0.0  # ours: tile amplitude spectra keep the speckle MSE blurs
    disc_lr: float = 1e-4  # discriminator AdamW learning rate


@dataclass(frozen=True, kw_only=True)
class Ldm(Training):
    """A latent diffusion model (train_ldm.py): mask, iUS, one-step or base."""

    beta_start: float  # linear beta schedule
    beta_end: float
    latent_sample: bool  # sample the VAE posterior (else its mode)
    validation_repeats: int  # noise draws per validation latent
    attention: list[bool] | None = None  # from scratch only: attention per level
    attention_head_dim: int | None = None  # from scratch only
    cross_attention_dim: int | None = None  # base iUS UNet from scratch: text width (SD: 768)
    text_tokens: int | None = None  # base iUS UNet from scratch: fixed zero text tokens (SD: 77)
    timesteps: int = 1000  # DDPM training steps
    augment_copies: int = 0  # latents encoded once from N augmented copies (0: encode every batch, the paper's)
    ema_decay: float = 0.0  # EMA of the weights; 0 = off
    uncond_prob: float = 0.0  # iUS LDM: condition dropout for classifier-free guidance
    embedding_channels: list[int] | None = None  # iUS LDM: mask embedding channels per level
    embedding_out_channels: int = 4  # iUS LDM: mask embedding output channels
    new_layers_lr: float = 0.0  # iUS LDM: lr of the zero-initialised mask path; 0 = the section's lr
    selection: Literal["loss", "fid"] = "loss"  # iUS LDM: keep the last weights, or the best validation FID
    validation_guidance: float | None = None  # selection "fid": guidance weight of the validation samples
    validation_sampler: Literal["ddpm", "ddim", "dpmsolver++"] | None = None  # selection "fid": their sampler
    validation_sampler_steps: int | None = None  # selection "fid": their sampler steps


@dataclass(frozen=True)
class ControlNetPhase:
    """One phase of the ControlNet baseline: A trains the UNet on iUS, B the ControlNet."""

    batch_size: int  # per process
    lr: float  # AdamW learning rate
    steps: int  # optimisation steps
    validation_steps: int  # validate every N steps
    checkpointing_steps: int  # resumable checkpoint every N steps
    warmup_steps: int = 0  # linear warm-up
    lr_schedule: Literal["constant", "cosine"] = "constant"  # after warm-up
    ema_decay: float = 0.0  # EMA of the weights; 0 = off
    keep_checkpoints: int = 1  # checkpoints kept on disk


@dataclass(frozen=True)
class ControlNet:
    """The ControlNet baseline (train_controlnet.py); keys shared by both phases."""

    phase_a: ControlNetPhase
    phase_b: ControlNetPhase
    seed: int  # per-fold seeds derive from it
    conditioning_embedding_channels: list[int]  # ControlNet's mask encoder
    latent_sample: bool  # sample the VAE posterior (else its mode)
    validation_repeats: int  # noise draws per validation latent
    beta_start: float = 0.001  # SD-1.5's scaled-linear schedule ends, as a linear schedule
    beta_end: float = 0.02
    timesteps: int = 1000  # DDPM training steps
    pretrained: bool = True  # phase A starts from the base's / SD-1.5's UNet
    cross_attention_dim: int | None = None  # from scratch only
    text_tokens: int | None = None  # from scratch only
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # autocast; weights stay fp32
    augment: bool = True  # augment training pairs
    augmentation: dict | None = None  # this section's [augmentation] instead of the shared one's
    augment_copies: int = 0  # latents encoded once from N augmented copies (0: every batch)
    uncond_prob: float = 0.0  # phase B: mask dropout; 0: none, as the reference ControlNet


@dataclass(frozen=True)
class Pix2Pix:
    """The Pix2Pix baseline (train_pix2pix.py): the reference's objective and optimiser; the
    schedule counts steps (constant_steps/decay_steps) or epochs (constant_epochs/decay_epochs)."""

    seed: int  # per-fold seeds derive from it
    ngf: int  # generator width (reference: 64)
    ndf: int  # discriminator width (reference: 64)
    validation_steps: int  # validate every N steps (model kept: lowest validation L1)
    checkpointing_steps: int  # resumable checkpoint every N steps
    constant_steps: int | None = None  # steps at the initial learning rate
    decay_steps: int | None = None  # steps of linear decay to zero
    constant_epochs: int | None = None  # or epochs
    decay_epochs: int | None = None
    disc_layers: int = 3  # 70x70 PatchGAN
    batch_size: int = 1  # the reference's
    augment: bool = True  # augment training pairs
    augmentation: dict | None = None  # this section's [augmentation] instead of the shared one's
    test_mode: Literal["train", "eval"] = "train"  # the reference's default at test time (dropout, batch statistics), or its --eval
    keep_checkpoints: int = 1  # checkpoints kept on disk


@dataclass(frozen=True)
class Sampling:
    """sample.py: pairs drawn per fold and how."""

    guidance: list[float]  # w, or candidates picked on validation by KID
    guidance_images: int  # validation images per guidance candidate
    steps: Union[int, Literal["all"]]  # sampler steps; "all": every training step (DDPM only, the paper's)
    sampler: Literal["ddpm", "ddim", "dpmsolver++"] = "ddpm"  # the paper's: DDPM
    batch_size: int = 64  # samples per UNet batch
    pairs_per_real: int = 3  # N = this x the fold's training images (SPEC)
    seed: int = 0  # each sample's seed derives from it, the fold and its index


@dataclass(frozen=True)
class Downstream:
    """The downstream nnU-Net study (downstream_nnunet.py; Fig. 9)."""

    trainer: str  # nnU-Net trainer class (short ones in code/nnunet_trainers/)
    folds: list[int]  # folds trained
    device: Literal["cpu", "cuda"]  # nnU-Net's torch device
    workers: int  # processes for preprocessing
    ratios: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2, 3])  # R: synthetic pairs per real one
    seed: int = 0  # seeds each training (with its fold and R)


@dataclass(frozen=True)
class EvaluateImages:
    """Table 2 and Fig. 8 (evaluate_images.py)."""

    segmenter: Literal["medsam", "standin", "auto"]  # MedSAM (the paper's), the R = 0 nnU-Net, or MedSAM when present
    fid_max_images: int  # images per set for FID/KID, evenly spaced; 0 = all (the paper's)
    standin_mirroring: bool  # the stand-in's test-time mirroring
    device: str  # torch device
    medsam_checkpoint: str | None = None  # MedSAM ViT-B in the weights folder


@dataclass(frozen=True)
class Pretrain:
    """The CPU profiles' base (SD-1.5's analogue), pretrained once per run on the corpus."""

    vae_image: Vae
    vae_mask: Vae
    ldm_image: Ldm
    ldm_mask: Ldm


@dataclass(frozen=True)
class Sections:
    """Every section a profile holds, by name."""

    phantom: Phantom
    corpus: Corpus
    augmentation: Augmentation
    pretrain: Pretrain
    vae_image: Vae
    vae_mask: Vae
    vae_joint: Vae
    ldm_mask: Ldm
    ldm_ius: Ldm
    ldm_onestep: Ldm
    controlnet: ControlNet
    pix2pix: Pix2Pix
    sampling: Sampling
    downstream: Downstream
    evaluate_images: EvaluateImages


# Keys that replace one another: a profile that sets one drops what it inherits of the others.
EXCLUSIVE = (("steps", "epochs"), ("constant_steps", "constant_epochs"), ("decay_steps", "decay_epochs"))
# Sections that hold a training's ``augmentation`` changes (merged over [augmentation]).
AUGMENTED = (Vae, Ldm, ControlNet, Pix2Pix)


# ---------------------------------------------------------------------------------------------
# Profile files


def profile_names() -> tuple[str, ...]:
    folder = resources.files(__package__).joinpath(PROFILE_DIR)
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml")))


def profile_file(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(PROFILE_DIR, f"{name}.toml")))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: no such profile file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None


def _layers(name: str, seen: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """A profile's files from the root ancestor down, each as (file, table)."""
    if name not in profile_names():
        raise InputError(f"unknown profile {name!r}; choose one of {', '.join(profile_names())}")
    if name in seen:
        raise InputError(f"{profile_file(name)}: inherit cycle ({' -> '.join((*seen, name))})")
    path = profile_file(name)
    table = read_toml(path)
    parent = table.pop("inherit", None)
    if parent is not None and not isinstance(parent, str):
        raise InputError(f"{path}: inherit: expected a profile name, got {parent!r}")
    above = _layers(parent, (*seen, name)) if parent else []
    return [*above, (path.name, table)]


# ---------------------------------------------------------------------------------------------
# Types


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a table"}.get(hint, str(hint))


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint) and not isinstance(value, bool)
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(hint))
    if origin is list:
        return isinstance(value, list) and all(_fits(v, typing.get_args(hint)[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(hint: Any) -> bool:
    return dataclasses.is_dataclass(hint)


def field_type(path: str) -> Any:
    """The declared type of a dotted key (``ldm_mask.steps``, ``size``)."""
    parts = path.split(".")
    cls: Any = Profile if len(parts) == 1 and parts[0] in _hints(Profile) else Sections
    for i, part in enumerate(parts):
        hints = _hints(cls)
        if part not in hints:
            where = ".".join(parts[:i]) or "the profile's top level"
            raise InputError(f"no setting {path!r}: [{where}] has no key {part!r}")
        cls = hints[part]
    return cls


# ---------------------------------------------------------------------------------------------
# Resolution


@dataclass(frozen=True)
class Resolved:
    """A profile's values (nested dicts, the shape scripts read) and each value's source."""

    name: str
    values: dict[str, Any]
    sources: dict[str, str]  # dotted key -> "schema", a profile file, or "--set"


def _merge(into: dict[str, Any], table: dict[str, Any], source: str, sources: dict[str, str], prefix: str = "") -> None:
    """Lay ``table`` over ``into``; a key of an exclusive pair drops the inherited other. A
    section's ``augmentation`` replaces the inherited one whole (``{}``: the shared table as is)."""
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and (key != "augmentation" or not prefix):
            if not isinstance(into.get(key), dict):
                into[key] = {}
            _merge(into[key], value, source, sources, dotted + ".")
            continue
        for group in EXCLUSIVE:
            if key in group:
                for other in group:
                    if other != key and other in into:
                        del into[other]
                        sources.pop(f"{prefix}{other}", None)
        into[key] = value
        sources[dotted] = source


def _check_table(cls: type, table: dict[str, Any], where: str, file: str) -> None:
    """Unknown keys, wrong types and missing required keys of one section, named."""
    hints = _hints(cls)
    for group in EXCLUSIVE:
        both = [key for key in group if key in table]
        if len(both) > 1:
            raise InputError(f"{file}: [{where}] sets both {' and '.join(both)}; keep one")
    for key, value in table.items():
        if key not in hints:
            raise InputError(f"{file}: [{where}] has no key {key!r} (keys: {', '.join(hints)})")
        hint = hints[key]
        if _is_section(hint):
            if not isinstance(value, dict):
                raise InputError(f"{file}: [{where}] {key}: expected a table, got {value!r}")
            _check_table(hint, value, f"{where}.{key}" if where else key, file)
        elif key == "augmentation" and cls is not Sections:
            if not isinstance(value, dict):
                raise InputError(f"{file}: [{where}] augmentation: expected a table, got {value!r}")
            _check_table(Augmentation, value, f"{where}.augmentation", file)
        elif not _fits(value, hint):
            raise InputError(f"{file}: [{where or 'top level'}] {key} = {value!r}: expected {_type_name(hint)}")


def _complete(cls: type, table: dict[str, Any], where: str, sources: dict[str, str]) -> dict[str, Any]:
    """A section with the schema's defaults filled in; a required key left unset is an error."""
    out: dict[str, Any] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        dotted, hint = f"{where}.{f.name}" if where else f.name, hints[f.name]
        if f.name in table:
            out[f.name] = table[f.name]
        elif f.default is not REQUIRED:
            out[f.name] = f.default
            sources[dotted] = SCHEMA
        elif f.default_factory is not REQUIRED:
            out[f.name] = f.default_factory()
            sources[dotted] = SCHEMA
        elif _is_section(hint):
            raise InputError(f"profile has no [{dotted}] section")
        else:
            raise InputError(f"[{where or 'top level'}] {f.name} is not set by the profile and has no default")
        if _is_section(hint):
            out[f.name] = _complete(hint, out[f.name], dotted, sources)
    return out


def _check_rules(values: dict[str, Any]) -> None:
    """Rules that span keys: one schedule per training, samplers that need a step count."""
    for where, section in _training_sections(values):
        if isinstance(section, dict) and "steps" in section and "epochs" in section:
            if (section["steps"] is None) == (section["epochs"] is None):
                raise InputError(f"[{where}] sets {'both' if section['steps'] is not None else 'neither of'} steps and epochs")
    sampling = values.get("sampling")
    if sampling and sampling["steps"] == "all" and sampling["sampler"] != "ddpm":
        raise InputError(f"[sampling] sampler {sampling['sampler']!r} needs a number of steps (steps = \"all\" is DDPM's)")


def _training_sections(values: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    named = [(s, values[s]) for s in ("vae_image", "vae_mask", "vae_joint", "ldm_mask", "ldm_ius", "ldm_onestep") if s in values]
    return named + [(f"pretrain.{k}", v) for k, v in values.get("pretrain", {}).items()]


def _unused_sections(top: dict[str, Any]) -> set[str]:
    """Sections no enabled stage reads: the corpus and base of a profile starting from SD-1.5,
    the phantom of one on real data that builds no corpus."""
    unused = set()
    if top["base"] != "corpus":
        unused |= {"corpus", "pretrain"}
    if top["data"] != "phantom" and top["base"] != "corpus":
        unused.add("phantom")
    return unused


def _effective(values: dict[str, Any]) -> dict[str, Any]:
    """Each training's augmentation merged over the shared table; ControlNet's shared keys under
    each phase's; unset optional keys (None) dropped, as scripts test for their presence."""
    shared = values.get("augmentation", {})

    def finish(section: dict[str, Any], cls: type) -> dict[str, Any]:
        out = {k: v for k, v in section.items() if v is not None}
        if cls in AUGMENTED:
            out["augmentation"] = {**shared, **(section.get("augmentation") or {})}
        return out

    out = dict(values)
    for name, cls in _hints(Sections).items():
        if name not in values or cls in (Augmentation,):
            continue
        if cls is Pretrain:
            out[name] = {part: finish(values[name][part], _hints(Pretrain)[part]) for part in values[name]}
        elif cls is ControlNet:
            common = finish({k: v for k, v in values[name].items() if k not in ("phase_a", "phase_b")}, ControlNet)
            out[name] = {**common, **{phase: {**common, **finish(values[name][phase], ControlNetPhase)} for phase in ("phase_a", "phase_b")}}
        else:
            out[name] = finish(values[name], cls)
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``SECTION.KEY=VALUE`` (VALUE in TOML: 3, 1e-4, true, [1, 2], "x"; a bare word is a string)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"--set {text!r}: expected SECTION.KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _override_table(key: str, value: Any) -> dict[str, Any]:
    hint = field_type(key)
    if _is_section(hint):
        raise InputError(f"--set {key}: a section, not a key")
    if not _fits(value, hint):
        raise InputError(f"--set {key}={value!r}: expected {_type_name(hint)}")
    table: dict[str, Any] = {}
    node = table
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return table


def resolve(name: str, overrides: tuple[str, ...] | list[str] = ()) -> Resolved:
    """A profile's settings: its files' tables laid over one another, then ``--set`` values,
    checked against the schema and completed with its defaults."""
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for file, table in _layers(name):
        top = {k: v for k, v in table.items() if not isinstance(v, dict)}
        _check_table(Profile, top, "", file)
        _check_table(Sections, {k: v for k, v in table.items() if isinstance(v, dict)}, "", file)
        _merge(merged, table, file, sources)
    for text in overrides:
        key, value = parse_override(text)
        _merge(merged, _override_table(key, value), "--set", sources)
    top = _complete(Profile, {k: v for k, v in merged.items() if not isinstance(v, dict)}, "", sources)
    unused = _unused_sections(top)
    present = {k: v for k, v in merged.items() if isinstance(v, dict) and k not in unused}
    sections_cls = {k: v for k, v in _hints(Sections).items() if k not in unused}
    values: dict[str, Any] = dict(top)
    for section, cls in sections_cls.items():
        values[section] = _complete(cls, present.get(section, {}), section, sources)
    _check_rules(values)
    values = _effective(values)
    sources = {k: v for k, v in sources.items() if k.split(".")[0] not in unused}
    return Resolved(name=name, values=values, sources=sources)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys (a training's ``augmentation`` table kept whole)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and (key != "augmentation" or not prefix):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def show_settings(resolved: Resolved) -> str:
    """Every resolved value, one per line, with its source (the schema, a profile file, --set)."""
    flat = flatten(resolved.values)
    width = max(len(k) for k in flat)
    lines = [f"# profile '{resolved.name}': value, then where it comes from"]
    for key, value in flat.items():
        own = resolved.sources.get(key)
        if key.endswith(".augmentation"):
            source = "[augmentation]" + (f" under this section's table in {own}" if own else "")
        else:
            source = own or SCHEMA
        lines.append(f"{key:<{width}} = {json.dumps(value):<24} # {source}")
    return "\n".join(lines)
