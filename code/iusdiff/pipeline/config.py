"""Profiles (smoke, default, paper and any derived one) resolved once, and the settings file a
stage is handed: the profile's identity and only the sections the stage reads.

Every script reads its settings through :func:`load_stage_settings`, from the file the runner
wrote (``--settings FILE``) or, run by hand, by resolving ``--profile NAME`` the same way.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iusdiff.data.splits import CASES, check_cases, paper_folds
from iusdiff.errors import InputError
from iusdiff.io import write_json
from iusdiff.pipeline.settings import profile_names, resolve
from iusdiff.weights import weight_deviations

PROFILES = profile_names()
FOLDS = tuple(f.fold for f in paper_folds())
# The profile keys every stage is handed: its identity, data, size, folds and thread pinning.
STAGE_KEYS = ("name", "data", "size", "cases", "folds", "threads")


def load_profile(name: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The named profile's settings with ``--set`` overrides, ``cases`` as a validated tuple and
    the deviations that absent optional weights cause on this machine (``deviations``; part of
    every stage's settings, so fingerprints change when weights appear or go)."""
    profile = dict(resolve(name, tuple(overrides)).values)
    profile["name"] = name
    profile["cases"] = CASES if profile["cases"] == "all" else check_cases(profile["cases"])
    check_folds(profile["folds"])
    profile["deviations"] = weight_deviations(profile)
    return profile


def check_folds(folds: Sequence[int]) -> None:
    """A profile's folds: some of the paper's five, each once."""
    if not folds or len(set(folds)) != len(folds) or not set(folds) <= set(FOLDS):
        raise InputError(f"folds = {list(folds)}: expected some of the paper's folds {list(FOLDS)}, each once")


def provenance(profile: dict[str, Any]) -> str:
    """The label every number of a profile carries, so phantom results never pass as the paper's
    and a run without an optional weight never passes as one with it."""
    if profile["data"] == "phantom":
        data = f"profile '{profile['name']}': synthetic phantom data, not RESECT; not comparable with the paper's numbers"
    else:
        data = f"profile '{profile['name']}': RESECT + RESECT-SEG data"
    return "; ".join([data, *profile.get("deviations", ())])


def section(profile: dict[str, Any], name: str) -> dict[str, Any]:
    """A (dotted) section of a resolved profile, e.g. ``pretrain.vae_image``."""
    table: Any = profile
    for part in name.split("."):
        if not isinstance(table, dict) or part not in table:
            raise InputError(f"profile '{profile['name']}' has no [{name}] settings")
        table = table[part]
    return table


def stage_settings(profile: dict[str, Any], sections: Sequence[str]) -> dict[str, Any]:
    """What a stage is handed: the profile's identity and label, and the sections it reads."""
    top = {key: list(profile[key]) if key == "cases" else profile[key] for key in STAGE_KEYS if key in profile}
    label = {"provenance": provenance(profile)} if "data" in profile else {}
    return {"profile": {**top, **label}, "sections": {name: section(profile, name) for name in sections}}


def write_stage_settings(path: Path, settings: dict[str, Any]) -> None:
    write_json(path, settings)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """``--settings FILE`` (what run_all.sh hands a stage) or ``--profile NAME`` (by hand)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--settings", type=Path, help="the stage's settings file (run_all.sh writes OUT/settings/<stage>.json)")
    group.add_argument("--profile", choices=PROFILES, help="resolve this profile's settings instead of reading a file")


def load_stage_settings(args: argparse.Namespace, sections: Sequence[str]) -> dict[str, Any]:
    """The settings a script runs with: its ``--settings`` file, or ``--profile`` resolved as the
    runner would; each of ``sections`` must be there."""
    if args.settings is None:
        return stage_settings(load_profile(args.profile), sections)
    try:
        settings = json.loads(Path(args.settings).read_text())
    except FileNotFoundError:
        raise InputError(f"{args.settings}: no such settings file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{args.settings}: not a settings file ({exc})") from None
    if not isinstance(settings, dict) or not isinstance(settings.get("profile"), dict) or not isinstance(settings.get("sections"), dict):
        raise InputError(f"{args.settings}: not a settings file (no 'profile' and 'sections' tables)")
    missing = [name for name in sections if name not in settings["sections"]]
    if missing:
        raise InputError(f"{args.settings}: no [{missing[0]}] section (it has: {', '.join(settings['sections']) or 'none'})")
    return settings
