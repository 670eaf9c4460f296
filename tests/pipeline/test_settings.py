"""The settings schema and the profile files: the same values as before the settings route, every
typo refused up front with file, section and key, ``--set`` typed, sources reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iusdiff.errors import InputError
from iusdiff.pipeline import settings as schema
from iusdiff.pipeline.config import load_profile
from iusdiff.pipeline.settings import resolve, show_settings

GOLDEN = Path(__file__).parent / "fixtures" / "settings_before_issue23.json"
TRAINING = ("vae_image", "vae_mask", "vae_joint", "ldm_mask", "ldm_ius", "ldm_onestep")
# Keys the schema now states that a section used to leave out; each value is what the scripts
# read in their absence (``cfg.get(key, value)``, or a falsy value where they tested ``not cfg.get``).
FORMERLY_IMPLICIT = {
    "uncond_prob": 0.0, "new_layers_lr": 0.0, "selection": "loss", "embedding_out_channels": 4, "spectral_weight": 0.0,
    "latent_channels": 4, "pretrained": False,
}
# Top-level keys new to the schema; unused where they did not exist (phantom profiles ignore the
# RESECT roots; ``threads = 0`` is the paper profile's "not pinned", formerly an absent key).
NEW_TOP = {"base", "folds", "resect_root", "seg_root", "stable_diffusion", "threads"}
# Values changed on purpose since the settings route, each with its reason.
CHANGED_SINCE = {
    "smoke:evaluate_images.fid_max_images: 20 -> 10",  # the suite's time (Inception at ~10 images/s)
}


def _compare(old: dict, new: dict, where: str, new_keys: set[str] = frozenset()) -> list[str]:
    problems = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            problems.append(f"{where}.{key}: missing")
        elif key not in old:
            if key not in new_keys and FORMERLY_IMPLICIT.get(key, object()) != new[key]:
                problems.append(f"{where}.{key}: new key = {new[key]!r}")
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            problems += _compare(old[key], new[key], f"{where}.{key}")
        elif old[key] != new[key]:
            problems.append(f"{where}.{key}: {old[key]!r} -> {new[key]!r}")
    return problems


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_every_value_resolves_as_before_the_settings_route(name):
    """Golden: the profiles as the old profiles.toml and the scripts' resolvers gave them."""
    before = json.loads(GOLDEN.read_text())[name]
    profile = load_profile(name)
    problems = []
    for section, cfg in before["scripts"].items():  # what each training/sampling script ran with
        node = profile
        for part in section.split("."):
            node = node[part]
        if section == "controlnet":  # each phase now holds the merged augmentation (the script read the top one)
            cfg = {**cfg, **{p: {**cfg[p], "augmentation": cfg["augmentation"]} for p in ("phase_a", "phase_b")}}
        problems += _compare(cfg, node, f"{name}:{section}")
    old_top = {k: v for k, v in before["profile"].items() if not isinstance(v, dict)}
    new_top = {k: (list(v) if k == "cases" else v) for k, v in profile.items() if not isinstance(v, dict)}
    problems += _compare(old_top, new_top, f"{name}:top", NEW_TOP)
    for section in ("phantom", "corpus", "augmentation", "downstream", "evaluate_images"):
        problems += _compare(before["profile"].get(section, {}), profile.get(section, {}), f"{name}:{section}")
    assert not [p for p in problems if p not in CHANGED_SINCE], "\n".join(problems)
    assert set(profile) - NEW_TOP == set(before["profile"]) - NEW_TOP


def _profile_dir(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    for name in ("default", "smoke", "paper"):
        (folder / f"{name}.toml").write_text(schema.profile_file(name).read_text())
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text)
    monkeypatch.setattr(schema, "profile_file", lambda name: folder / f"{name}.toml")
    monkeypatch.setattr(schema, "profile_names", lambda: tuple(sorted(p.stem for p in folder.glob("*.toml"))))


@pytest.mark.parametrize(
    "text, message",
    [
        ('inherit = "smoke"\n[ldm_mask]\nno_such_key = 1\n', r"typo.toml: \[ldm_mask\] has no key 'no_such_key'"),
        ('inherit = "smoke"\n[ldm_mask]\nlr_schedule = "cosin"\n', r"typo.toml: \[ldm_mask\] lr_schedule = 'cosin': expected 'constant' or 'cosine'"),
        ('inherit = "smoke"\n[ldm_maks]\nsteps = 3\n', r"typo.toml: \[\] has no key 'ldm_maks'|typo.toml: \[top level\].*ldm_maks|no key 'ldm_maks'"),
        ('inherit = "smoke"\n[controlnet.phase_a]\nsteps = "3"\n', r"typo.toml: \[controlnet.phase_a\] steps = '3': expected an integer"),
        ('inherit = "smoke"\nsize = 64.5\n', r"typo.toml: \[top level\] size = 64.5: expected an integer"),
        ('inherit = "smoke"\n[ldm_ius]\naugmentation = { rotation = 3.0 }\n', r"typo.toml: \[ldm_ius.augmentation\] has no key 'rotation'"),
        ('inherit = "nothing"\n', r"unknown profile 'nothing'"),
        ('inherit = "smoke"\n[sampling]\nsampler = "ddim"\nsteps = "all"\n', r"\[sampling\] sampler 'ddim' needs a number of steps"),
        ('inherit = "smoke"\n[vae_image]\nepochs = 2\nsteps = 3\n', r"typo.toml: \[vae_image\] sets both steps and epochs"),
    ],
)
def test_a_typo_or_a_wrong_type_is_refused_naming_file_section_and_key(tmp_path, monkeypatch, text, message):
    _profile_dir(tmp_path, monkeypatch, {"typo": text})
    with pytest.raises(InputError, match=message):
        resolve("typo")


def test_a_derived_profile_holds_only_its_differences_and_exclusive_keys_replace_each_other(tmp_path, monkeypatch):
    _profile_dir(tmp_path, monkeypatch, {"mine": 'inherit = "smoke"\n[ldm_mask]\nepochs = 2\n[ldm_ius]\naugmentation = {}\n'})
    mine, smoke = resolve("mine"), resolve("smoke")
    assert mine.values["ldm_mask"]["epochs"] == 2 and "steps" not in mine.values["ldm_mask"]
    assert mine.values["ldm_ius"]["augmentation"] == smoke.values["augmentation"]
    assert {k: v for k, v in mine.values.items() if k not in ("ldm_mask", "ldm_ius")} == {
        k: v for k, v in smoke.values.items() if k not in ("ldm_mask", "ldm_ius")
    }
    assert mine.sources["ldm_mask.epochs"] == "mine.toml" and mine.sources["ldm_mask.lr"] == "smoke.toml"


def test_set_is_typed_validated_and_reported_as_its_source():
    resolved = resolve("smoke", ("ldm_mask.steps=9", "sampling.sampler=ddpm", "sampling.guidance=[2.0]", "augmentation.p=1"))
    assert resolved.values["ldm_mask"]["steps"] == 9 and resolved.values["sampling"]["guidance"] == [2.0]
    assert resolved.values["ldm_mask"]["augmentation"]["p"] == 1  # the shared table reaches every training
    assert resolved.sources["ldm_mask.steps"] == "--set"
    assert "ldm_mask.steps" in show_settings(resolved) and "# --set" in show_settings(resolved)
    for bad, message in [
        ("ldm_mask.no_such_key=1", r"\[ldm_mask\] has no key 'no_such_key'"),
        ("ldm_mask.steps=many", r"ldm_mask.steps='many': expected an integer"),
        ("ldm_mask", r"expected SECTION.KEY=VALUE"),
        ("ldm_mask=3", r"--set ldm_mask: a section"),
    ]:
        with pytest.raises(InputError, match=message):
            resolve("smoke", (bad,))


def test_profiles_are_small_and_state_differences_only():
    files = [schema.profile_file(n) for n in ("default", "smoke", "paper")]
    assert sum(len(f.read_text().splitlines()) for f in files) <= 550
    for name in ("smoke", "paper"):
        lines = [line for line in schema.profile_file(name).read_text().splitlines() if line and not line.startswith("#")]
        assert lines[0] == 'inherit = "default"'
    # A value a delta restates unchanged would hide what actually differs.
    default = schema._layers("default")[-1][1]
    for name in ("smoke", "paper"):
        delta = schema._layers(name)[-1][1]
        same = [f"{s}.{k}" for s, t in delta.items() if isinstance(t, dict) for k, v in t.items()
                if isinstance(default.get(s), dict) and default[s].get(k, object()) == v]
        assert not same, f"{name}.toml restates default values: {same}"
