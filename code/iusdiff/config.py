"""Profiles (smoke, default, paper): one TOML file in the package, read here."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from iusdiff.errors import InputError
from iusdiff.splits import CASES, check_cases
from iusdiff.weights import weight_deviations

PROFILES = ("smoke", "default", "paper")


def load_profile(name: str) -> dict[str, Any]:
    """The named profile's settings, with ``cases`` resolved to a validated tuple and the
    deviations that absent optional weights cause on this machine (``deviations``; part of the
    profile, so the runner's fingerprints change when weights appear or go)."""
    if name not in PROFILES:
        raise InputError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    with resources.files("iusdiff").joinpath("profiles.toml").open("rb") as handle:
        profile = dict(tomllib.load(handle)[name])
    profile["name"] = name
    profile["cases"] = CASES if profile["cases"] == "all" else check_cases(profile["cases"])
    profile["deviations"] = weight_deviations(profile)
    return profile


def provenance(profile: dict[str, Any]) -> str:
    """The label every number of a profile carries, so phantom results never pass as the paper's
    and a run without an optional weight never passes as one with it."""
    if profile["data"] == "phantom":
        data = f"profile '{profile['name']}': synthetic phantom data, not RESECT; not comparable with the paper's numbers"
    else:
        data = f"profile '{profile['name']}': RESECT + RESECT-SEG data"
    return "; ".join([data, *profile.get("deviations", ())])
