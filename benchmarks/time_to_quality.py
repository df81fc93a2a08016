#!/usr/bin/env python
"""Time to quality: the guide's train command against the reference code's 50 epochs, same data, one invocation.

For each ``--scale`` (1 = the seed0 pool, about 101,700 steps x 4096-D) it generates seed0-shaped
rollouts, prepares them the reference's way (the guide's ``*_dataset.pkl``) and the project's way
(the deduplicated ``.vlarisk`` dataset, plus the per-step one the reference's rows are checked
against), then runs, each in its own process with its peak memory sampled:

``reference``            the reference code's own training loop (``benchmarks/stages.py train3 reference``,
                         ``--epochs`` epochs, validation every epoch), then its held-out test AUC
``project``              the guide's train command (``workflow_scripts/train_risk_predictor.py --epochs 50
                         --batch-size 256 --lr 1e-3 --normalize``, every other setting at its default, early
                         stopping included), on the same split; results.json gives the held-out AUC, the
                         logistic baseline's on the same rows and the collapse verdict
``project, patience 0``  the same command running every epoch (``--patience 0``): what early stopping costs in AUC

Whole-command wall time and peak memory (the larger of the process tree's sampled PSS and the
process's high-water RSS) are compared with the reference's. Compare ratios within one invocation.

    python benchmarks/time_to_quality.py --scale 0.05 --epochs 5                 # smoke run
    python benchmarks/time_to_quality.py --scale 0.5 1 --output benchmarks/results/time_to_quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import REPO, GiB, TreeMemorySampler, machine, run_stage  # noqa: E402

# the guide's command line (TRAINING_GUIDE.md, "Train on data from one VLA model"); --epochs is added
GUIDE_FLAGS = ["--batch-size", "256", "--lr", "1e-3", "--normalize"]
PROJECT_RUNS = {"project": [], "project, patience 0": ["--patience", "0"]}
TARGET_SPEEDUP, TARGET_MEMORY, LOGISTIC_MARGIN, EARLY_STOP_TOLERANCE = 15.0, 0.2, 0.03, 0.005


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, nargs="+", default=[0.5, 1.0], help="multiples of the seed0 pool (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=50, help="the guide's epochs, for both (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every run (default: %(default)s)")
    parser.add_argument(
        "--skip-reference-above",
        type=float,
        default=None,
        help="above this scale run only the project's commands (the reference's 50 epochs are the long part)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where rollouts and datasets go (default: a new /tmp directory)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--output", type=Path, default=None, help="also write the records (JSON) and the table (.md beside it)")
    args = parser.parse_args(argv)
    # what benchmarks/run.py's run_stage passes to every stage process
    args.hidden_dim, args.batch_size, args.train_steps = 4096, 256, 0
    return args


def guide_command(workdir: Path, name: str, extra: list[str], args: argparse.Namespace) -> dict:
    """Run the guide's train command on the prepared dataset and split; wall time, peak memory and results.json."""
    output_dir = workdir / name.replace(", ", "_").replace(" ", "_")
    shutil.rmtree(output_dir, ignore_errors=True)
    command = [
        sys.executable,
        str(REPO / "workflow_scripts/train_risk_predictor.py"),
        *("--data", str(workdir / "dataset.vlarisk"), "--split", str(workdir / "split.json"), "--output-dir", str(output_dir)),
        *("--epochs", str(args.epochs), *GUIDE_FLAGS, "--threads", str(args.threads), *extra),
    ]
    os.sync()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    sampler = TreeMemorySampler(process.pid)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    sampler.stop()
    if os.waitstatus_to_exitcode(status) != 0:
        print(f"!! {name} failed with exit status {os.waitstatus_to_exitcode(status)}", file=sys.stderr, flush=True)
        return {"impl": name, "failed": True}
    results = json.loads((output_dir / "results.json").read_text())
    history = results["history"]
    record = {
        "impl": name,
        "process_seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_bytes": max(usage.ru_maxrss * 1024, sampler.peak_pss),
        "mean_auc": results["test_metrics"]["mean_auc"],
        "logistic_mean_auc": results["baselines"]["logistic"]["mean_auc"],
        "collapse": results["collapse"],
        "epochs_run": len(history["train_loss"]),
        "stop": history.get("stop"),
        "training_seconds": sum(history["epoch_seconds"]),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    print(
        f"   {name:20s} {seconds:8.1f} s  peak {record['peak_bytes'] / GiB:5.2f} GiB  AUC {record['mean_auc']:.4f}  "
        f"epochs {record['epochs_run']}  (load {load_before:.2f} -> {record['load_after']:.2f})",
        flush=True,
    )
    return record


def measure_scale(scale: float, args: argparse.Namespace) -> list[dict]:
    """Data, the reference's training and the guide's command at one scale."""
    args.current_scale = scale
    workdir = args.workdir / f"scale_{scale}" if args.workdir else Path(tempfile.mkdtemp(prefix=f"vlarisk-ttq-{scale}-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"== scale {scale} in {workdir}", flush=True)
    try:
        generated = run_stage("generate", "rollouts", workdir, args)
        with_reference = args.skip_reference_above is None or scale <= args.skip_reference_above
        records = []
        for impl in ("reference", "project", "project-perstep") if with_reference else ("project",):
            run_stage("prepare", impl, workdir, args)
        if with_reference:
            records.append(run_stage("train3", "reference", workdir, args))
            records[0].update(impl="reference", epochs_run=args.epochs)
        records += [guide_command(workdir, name, extra, args) for name, extra in PROJECT_RUNS.items()]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for record in records:
        record.update(scale=scale, steps=generated["samples"])
    return records


def table(records: list[dict]) -> str:
    """One row per run: whole-command time and memory, their ratios to the reference, held-out AUCs."""
    lines = [
        "| scale | steps | run | command s | peak GiB | epochs run | held-out AUC | logistic AUC | collapsed | speed vs reference | memory vs reference | load |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    references = {r["scale"]: r for r in records if r["impl"] == "reference" and not r.get("failed")}
    for r in records:
        if r.get("failed"):
            lines.append(f"| {r['scale']} | | {r['impl']} | FAILED | | | | | | | | |")
            continue
        base = references.get(r["scale"])
        speed = memory = "baseline" if r is base else ""
        if base and r is not base:
            speed = f"{base['process_seconds'] / r['process_seconds']:.2f}x"
            memory = f"{r['peak_bytes'] / base['peak_bytes']:.2f}x"
        logistic = f"{r['logistic_mean_auc']:.4f}" if r.get("logistic_mean_auc") is not None else ""
        lines.append(
            f"| {r['scale']} | {r['steps']:,} | {r['impl']} | {r['process_seconds']:.1f} | "
            f"{r['peak_bytes'] / GiB:.2f} | {r['epochs_run']} | {r['mean_auc']:.4f} | {logistic} | {'yes' if r.get('collapse') else 'no'} | "
            f"{speed} | {memory} | {r['load_before']:.2f}→{r['load_after']:.2f} |"
        )
    return "\n".join(lines)


def targets(records: list[dict]) -> str:
    """The time-to-quality targets at every scale (those against the reference where it ran)."""
    index = {(r["scale"], r["impl"]): r for r in records if not r.get("failed")}
    lines = []
    for scale in sorted({r["scale"] for r in records}):
        reference, project, every = (index.get((scale, name)) for name in ("reference", *PROJECT_RUNS))
        if not project:
            continue
        checks = []
        if reference:
            speed = reference["process_seconds"] / project["process_seconds"]
            memory = project["peak_bytes"] / reference["peak_bytes"]
            checks += [
                (f"{speed:.2f}x faster (>= {TARGET_SPEEDUP:g}x)", speed >= TARGET_SPEEDUP),
                (f"peak memory {memory:.2f}x (<= {TARGET_MEMORY:g}x)", memory <= TARGET_MEMORY),
                (
                    f"held-out AUC {project['mean_auc']:.4f} vs reference {reference['mean_auc']:.4f}",
                    project["mean_auc"] >= reference["mean_auc"],
                ),
            ]
        checks += [
            (
                f"vs logistic {project['logistic_mean_auc']:.4f} - {LOGISTIC_MARGIN:g}",
                project["mean_auc"] >= project["logistic_mean_auc"] - LOGISTIC_MARGIN,
            ),
            ("not collapsed", not project["collapse"]),
        ]
        if every:
            change = project["mean_auc"] - every["mean_auc"]
            checks.append(
                (
                    f"early stopping (stopped after epoch {project['epochs_run']}) vs every epoch: AUC {change:+.4f} (within {EARLY_STOP_TOLERANCE:g})",
                    abs(change) <= EARLY_STOP_TOLERANCE,
                )
            )
        lines.append(f"targets at scale {scale}:")
        lines += [f"  {text}: {'MET' if ok else 'MISSED'}" for text, ok in checks]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    info = machine()
    print(f"machine: {info}", flush=True)
    records: list[dict] = []
    for scale in args.scale:
        records += measure_scale(scale, args)
        info["loadavg_end"] = os.getloadavg()
        text = (
            f"{args.epochs} epochs, {args.threads} threads; load average at start {info['loadavg_start'][0]:.2f}, "
            f"at end {info['loadavg_end'][0]:.2f}\n\n{table(records)}\n\n{targets(records)}\n"
        )
        if args.output:  # after every scale, so that a long run's finished scales are kept
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps({"machine": info, "records": records}, indent=1, default=str) + "\n")
            args.output.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
