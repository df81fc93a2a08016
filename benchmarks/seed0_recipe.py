#!/usr/bin/env python
"""The default recipe at the real pool's scale: does it learn in 3 epochs, and is its speed steady?

Simulates a seed0-sized source (about 101,700 steps x 4096-D, sparse labels, massive-activation
features, uneven scales), prepares it, then runs the guide's training command twice for
``--epochs`` epochs: with the defaults, and with a learning rate so large that the model saturates
(a forced collapse). It prints one row per run and epoch: samples/s, validation mean AUC and the
collapse detector's verdict, then the held-out AUC of the default model beside the logistic
baseline. Equal samples/s in both runs shows that CPU speed no longer depends on the model's state.

    python benchmarks/seed0_recipe.py --output benchmarks/results/seed0_recipe.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from generator_family import GENERATOR_FAMILY

from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.synthetic import write_synthetic_source

REPO = Path(__file__).resolve().parents[1]
SEED0 = {"num_success": 200, "num_failure": 374, "success_steps": (80, 114), "failure_steps": 220, "risk_window_fraction": 0.05}
RUNS = {"default": [], "forced collapse (lr 30)": ["--lr", "30"]}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--output", type=Path, default=None, help="write the records (JSON) and the table (.md beside it)")
    return parser.parse_args(argv)


def train(dataset: Path, output_dir: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    """Run the guide's training command; its results.json with the wall time of the whole command."""
    command = [
        sys.executable,
        str(REPO / "workflow_scripts/train_risk_predictor.py"),
        "--data",
        str(dataset),
        "--output-dir",
        str(output_dir),
    ]
    command += [
        "--epochs",
        str(args.epochs),
        "--batch-size",
        "256",
        "--lr",
        "1e-3",
        "--normalize",
        "--threads",
        str(args.threads),
        "--test-split",
        "0.3",
        *extra,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    results = json.loads((output_dir / "results.json").read_text())
    results["command_seconds"] = time.perf_counter() - started
    return results


def rows(name: str, results: dict) -> list[str]:
    """One table row per epoch of a run."""
    history = results["history"]
    out = []
    for epoch, (rate, metrics) in enumerate(zip(history["samples_per_second"], history["val_metrics"], strict=True), start=1):
        auc = "n/a" if metrics["mean_auc"] is None else f"{metrics['mean_auc']:.3f}"
        out.append(f"| {name} | {epoch} | {rate:,.0f} | {auc} | {'collapsed' if metrics['collapse'] else 'healthy'} |")
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    spec = replace(GENERATOR_FAMILY["wide_4096"], **SEED0)
    with tempfile.TemporaryDirectory(prefix="vlarisk-seed0-") as scratch:
        work = Path(scratch)
        write_synthetic_source(spec, work / "success.pkl", work / "failure.pkl", work / "planting.npz")
        metadata = prepare_dataset(work / "success.pkl", work / "failure.pkl", work / "dataset.vlarisk")
        results = {name: train(work / "dataset.vlarisk", work / f"run{i}", args, extra) for i, (name, extra) in enumerate(RUNS.items())}
    steps = sum(r["num_steps"] for r in metadata["rollouts"]) if "rollouts" in metadata else None
    lines = [f"Seed0-scale source: {steps:,} steps x {spec.hidden_dim}-D; {args.epochs} epochs, {args.threads} threads.", ""]
    lines += ["| run | epoch | samples/s | val mean AUC | detector |", "|---|---:|---:|---:|---|"]
    for name, result in results.items():
        lines += rows(name, result)
    default = results["default"]
    versus = default["baselines"]["model_vs_logistic"]
    lines += [
        "",
        f"Default run: held-out mean AUC {versus['model_mean_auc']:.3f} against the logistic baseline's {versus['logistic_mean_auc']:.3f} "
        f"(step index {default['baselines']['step_index']['mean_auc']:.3f}); whole command {default['command_seconds']:.0f} s.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"spec": str(spec), "results": results}, indent=1, default=str) + "\n")
        args.output.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
