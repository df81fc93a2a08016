"""Running the Snakemake pipeline on a private copy of the project, and reading its plans."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_PARTS = ("Snakefile", "rules", "config", "envs", "workflow_scripts", "src", "profiles", "report", "tests/data")


def copy_project(destination: Path) -> Path:
    """Copy what the pipeline needs (no results, no venv) into ``destination``."""
    for part in PROJECT_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, destination / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif source.exists():
            (destination / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / part)
    return destination


def load_script(name: str):
    """Import ``workflow_scripts/<name>.py`` as a module (to call its ``main`` in-process)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "workflow_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` with the venv's interpreter first on PATH; SIGINT on timeout."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = ["timeout", "-s", "INT", "-k", "30", str(timeout), sys.executable, "-m", "snakemake", *args]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)


def planned_jobs(workdir: Path, *args: str) -> Counter:
    """Jobs a dry run would execute, counted per rule (empty when there is nothing to do)."""
    result = snakemake(workdir, "-n", *args)
    assert result.returncode == 0, result.stderr + result.stdout
    output = result.stdout + result.stderr
    counts = Counter()
    table = re.search(r"Job stats:\n(.*?)\n\n", output, re.S)
    if table:
        for line in table.group(1).splitlines()[2:]:
            rule, count = line.split()
            if rule != "total":
                counts[rule] = int(count)
    return counts


def planned_wildcards(workdir: Path, *args: str) -> set[tuple[str, str]]:
    """``(rule, wildcards)`` pairs of the jobs a dry run would execute."""
    result = snakemake(workdir, "-n", *args)
    assert result.returncode == 0, result.stderr
    pairs = re.findall(r"^(?:local)?rule (\w+):\n(?:.*\n)*?\s+wildcards: ([^\n]+)", result.stdout, re.M)
    return set(pairs)


def without(volatile: re.Pattern):
    """A function giving a document (dict/list tree) without the keys ``volatile`` matches, keys sorted."""

    def stable(obj):
        if isinstance(obj, dict):
            return {k: stable(v) for k, v in sorted(obj.items()) if not volatile.search(k)}
        if isinstance(obj, list):
            return [stable(v) for v in obj]
        return obj

    return stable
