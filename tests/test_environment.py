"""The software definitions agree: pyproject.toml's dependencies, the conda environment of the
rules (envs/vlarisk.yaml) and the Makefile's torch.

conda itself is not needed: the environment file is checked as data. It must name no path (Snakemake
copies it elsewhere before conda reads it), and every package the jobs import must be in it at
pyproject's lowest version.
"""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / "envs" / "vlarisk.yaml"
DRIVER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}  # run Snakemake itself, not the jobs
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(.*?)\s*$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(lines) -> dict[str, str]:
    """``{name: version spec}`` of requirement strings (``numpy>=1.26``, conda's ``numpy >=1.26``)."""
    found = {}
    for line in lines:
        name, spec = REQUIREMENT.match(line).groups()
        found[canonical(name)] = spec.replace(" ", "")
    return found


def project():
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def environment() -> tuple[dict[str, str], list[str]]:
    """The conda packages and the pip lines of the environment file."""
    entries = yaml.safe_load(ENV_FILE.read_text())["dependencies"]
    conda = [e for e in entries if isinstance(e, str)]
    pip = [line for e in entries if isinstance(e, dict) for line in e["pip"]]
    return requirements(conda), pip


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name} \?= (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"Makefile: no {name}"
    return match.group(1).strip()


def test_the_environment_names_no_path():
    conda, pip = environment()
    for line in pip:
        assert not re.match(r"^(-e|--editable)\b|^\.|/", line.split("https://")[0].strip()), f"{ENV_FILE}: pip line {line!r} names a path"


def test_every_dependency_of_the_jobs_is_in_the_environment():
    conda, pip = environment()
    pip_packages = requirements(line for line in pip if not line.startswith("-"))
    available = {**conda, **pip_packages}
    for name, spec in requirements(project()["dependencies"]).items():
        if name in DRIVER_ONLY:
            assert name not in available, f"{ENV_FILE}: {name} is the driver's, not the jobs'"
            continue
        assert name in available, f"{ENV_FILE}: lacks {name} (pyproject.toml: {name}{spec})"
        if name == "torch":
            continue  # pinned exactly below
        assert available[name] == spec, f"{ENV_FILE}: {name}{available[name]}, pyproject.toml: {name}{spec}"
    assert "vlarisk" not in available


def test_the_python_of_the_environment_is_one_the_project_supports():
    conda, _ = environment()
    version = conda["python"].lstrip("=")
    minimum = project()["requires-python"].removeprefix(">=")
    assert tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))


def test_torch_is_the_makefile_s_build():
    _, pip = environment()
    assert makefile_variable("TORCH_SPEC") in pip
    assert f"--index-url {makefile_variable('TORCH_INDEX')}" in pip
