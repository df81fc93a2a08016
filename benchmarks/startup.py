#!/usr/bin/env python
"""Start-up where a person waits: every command's ``--help``, and a training command up to its first step.

Prints three tables (median of ``--repeat`` runs, each in a fresh process):

* each installed command's ``--help`` wall time (``[project.scripts]`` in pyproject.toml);
* ``vlarisk-train`` on a tiny dataset (``--epochs 1 --no-test``): seconds from process start to
  the first training step (its first ``backward``) and to the end, with the project's optimiser
  and with ``torch.optim.Adam`` fused and foreach in its place (both import torch's compiler stack);
* ``python -X importtime`` of one such run: the cumulative import time of the heavy libraries
  (none where a library is not imported), less sensitive to other load on the machine than wall times.

The commands import ``vlarisk`` from ``PYTHONPATH`` (``--src`` sets it), so the same script times
another checkout; the optimiser rows other than the project's need this checkout's code.

    python benchmarks/startup.py
    python benchmarks/startup.py --repeat 3 --src /path/to/other/checkout/src
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sklearn", "scipy", "matplotlib", "torch._dynamo", "torch._inductor")
# a child's first backward (the first training step) writes the wall clock to FIRST_STEP_FILE
FIRST_STEP_PROBE = """
import os, sys, time, torch.autograd
backward = torch.autograd.backward
def first(*args, **kwargs):
    if not os.path.exists(os.environ["FIRST_STEP_FILE"]):
        open(os.environ["FIRST_STEP_FILE"], "w").write(repr(time.time()))
    return backward(*args, **kwargs)
torch.autograd.backward = first
"""
OPTIMISERS = {
    "project (vlarisk.train.adam.FusedAdam)": "",
    "torch.optim.Adam(fused=True)": "import torch, vlarisk.train.training as t; t.adam = lambda p, d, **o: torch.optim.Adam(p, fused=True, **o)\n",
    "torch.optim.Adam(foreach=True)": "import torch, vlarisk.train.training as t; t.adam = lambda p, d, **o: torch.optim.Adam(p, foreach=True, **o)\n",
}
RUN_MAIN = "sys.argv = ['vlarisk-train', *sys.argv[1:]]\nfrom vlarisk.commands.train import cli\ncli()\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per row; the median is reported (default: %(default)s)")
    parser.add_argument("--src", default=str(ROOT / "src"), help="the vlarisk sources the commands import (default: this checkout's)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every run (default: %(default)s)")
    return parser.parse_args(argv)


def environment(args: argparse.Namespace) -> dict:
    return {**os.environ, "PYTHONPATH": args.src, "OMP_NUM_THREADS": str(args.threads)}


def command_names() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def help_seconds(name: str, env: dict) -> float:
    tick = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / name), "--help"], env=env, check=True, capture_output=True)
    return time.perf_counter() - tick


def tiny_dataset(directory: Path) -> Path:
    """A small prepared dataset (64-D states, 100 rollouts): training itself takes a fraction of a second."""
    from vlarisk.data.prepare import prepare_dataset
    from vlarisk.data.synthetic import SimulationSpec, write_synthetic_source

    paths = [directory / name for name in ("success.pkl", "failure.pkl", "planting.npz")]
    spec = SimulationSpec(hidden_dim=64, num_success=50, num_failure=50, success_steps=(20, 30), failure_steps=40, num_tasks=4)
    write_synthetic_source(spec, *paths)
    prepare_dataset(paths[0], paths[1], directory / "tiny.vlarisk")
    return directory / "tiny.vlarisk"


def training_seconds(setup: str, data: Path, work: Path, env: dict, importtime: bool = False) -> tuple[float, float, str]:
    """Seconds to the first training step and to the end of one training command, and its stderr."""
    stamp = work / "first_step"
    stamp.unlink(missing_ok=True)
    shutil.rmtree(work / "run", ignore_errors=True)
    flags = ["--data", str(data), "--output-dir", str(work / "run"), "--epochs", "1", "--no-test", "--seed", "0"]
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", FIRST_STEP_PROBE + setup + RUN_MAIN, *flags]
    started = time.time()
    done = subprocess.run(command, env={**env, "FIRST_STEP_FILE": str(stamp)}, check=True, capture_output=True, text=True)
    ended = time.time()
    return float(stamp.read_text()) - started, ended - started, done.stderr


def cumulative_imports(importtime_log: str) -> dict[str, float]:
    """Seconds each of :data:`HEAVY` took to import, by ``-X importtime``'s cumulative column."""
    seconds = {}
    for line in importtime_log.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match[2] in HEAVY:
            seconds[match[2]] = max(seconds.get(match[2], 0.0), int(match[1]) / 1e6)
    return seconds


def main(argv=None) -> None:
    args = parse_args(argv)
    env = environment(args)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; vlarisk from {args.src}; median of {args.repeat}")
    print()
    print("| command | `--help` seconds |")
    print("|---|---|")
    for name in command_names():
        print(f"| {name} | {statistics.median(help_seconds(name, env) for _ in range(args.repeat)):.2f} |")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = tiny_dataset(work)
        print()
        print("`vlarisk-train --epochs 1 --no-test` on a 64-D dataset of 100 rollouts")
        print()
        print("| optimiser | seconds to the first step | whole command |")
        print("|---|---|---|")
        for label, setup in OPTIMISERS.items() if args.src == str(ROOT / "src") else [("as in --src", "")]:
            runs = [training_seconds(setup, data, work, env)[:2] for _ in range(args.repeat)]
            print(f"| {label} | {statistics.median(r[0] for r in runs):.2f} | {statistics.median(r[1] for r in runs):.2f} |")
        print()
        print("`python -X importtime` of the same command (project optimiser), cumulative import seconds")
        print()
        imports = [cumulative_imports(training_seconds("", data, work, env, importtime=True)[2]) for _ in range(args.repeat)]
        print("| library | " + " | ".join(HEAVY) + " |")
        print("|---|" + "---|" * len(HEAVY))
        cells = [f"{statistics.median(run.get(name, 0.0) for run in imports):.2f}" if imports[0].get(name) else "-" for name in HEAVY]
        print("| seconds | " + " | ".join(cells) + " |")
    print()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
