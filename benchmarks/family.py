#!/usr/bin/env python
"""The default recipe on every member of the generator family, beside the baselines it must beat.

For each member of ``GENERATOR_FAMILY`` in ``benchmarks/generator_family.py`` (or those named), simulate the
rollouts, prepare them, split by rollout (the project's default split with test_seen at 30%, so that enough failures are held out), train
with the default :class:`~vlarisk.train.training.TrainingConfig` (bar ``--epochs``), and print two tables:
the model's held-out mean per-step AUC beside the class-balanced logistic regression's, the
shortcut scorers' (step index, |action|) and the planted-direction scorer's, on the same rows; and
rollout-level failure detection per test set (unseen tasks first) beside the baselines.

    python benchmarks/family.py                                  # every member, 15 epochs
    python benchmarks/family.py --members sparse weak --loss-type mse
    python benchmarks/family.py --output benchmarks/results/family.json   # raw records + .md table
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from generator_family import GENERATOR_FAMILY, scaled_member, score_member

from vlarisk.core.settings import LOSS_TYPES, TrainingConfig

SCORERS = ("logistic", "step_index", "abs_action", "planted_direction")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", nargs="*", default=list(GENERATOR_FAMILY), choices=list(GENERATOR_FAMILY))
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default: %(default)s)")
    parser.add_argument("--loss-type", choices=LOSS_TYPES, default=TrainingConfig.loss_type, help="default: %(default)s")
    parser.add_argument("--rollouts", type=float, default=1.0, help="scale every member's rollout count (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="training and split seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument(
        "--calibration-tasks",
        choices=("none", "auto"),
        default="none",
        help="calibrate the alarm on the training tasks' successes (none) or on tasks held out of training (auto)",
    )
    parser.add_argument("--output", type=Path, default=None, help="write every record (JSON) and the table (.md beside it)")
    return parser.parse_args(argv)


def member_record(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Train and score one member; the row of the table and the raw report behind it."""
    spec = scaled_member(name, rollouts=args.rollouts)
    config = TrainingConfig(epochs=args.epochs, loss_type=args.loss_type, seed=args.seed)
    started = time.perf_counter()
    report = score_member(spec, workdir / name, config, calibration_tasks="auto" if args.calibration_tasks == "auto" else ())
    seconds = time.perf_counter() - started
    baselines = report["baselines"]
    positives = sum(report["positives"].values()) / (7 * report["num_samples"])
    return {
        "member": name,
        "hidden_dim": spec.hidden_dim,
        "test_steps": report["num_samples"],
        "positive_share": positives,
        "model": report["test_metrics"]["mean_auc"],
        **{scorer: baselines[scorer]["mean_auc"] for scorer in SCORERS if scorer in baselines},
        "margin_vs_logistic": baselines["model_vs_logistic"]["margin"],
        "collapsed": report["collapsed"],
        "best_epoch": report["best_epoch"],
        "detection": {name: _detection_row(block) for name, block in report["detection"].items()},
        "seconds": seconds,
        "spec": asdict(spec),
        "report": report,
    }


def _detection_row(block: dict) -> dict:
    """One test set's headline detection numbers: the model's with intervals, the baselines' AUC."""
    baselines = block["baselines"]
    return {
        "rollouts": block["n_rollouts"],
        **{m: block[m] for m in ("rollout_auc", "tpr", "fpr", "balanced_accuracy", "lead_time_steps_median")},
        "rollout_auc_ci": block["ci95"]["rollout_auc"],
        "fpr_ci": block["ci95"]["fpr"],
        **{
            f"{name}_auc": baselines.get(name, {}).get("rollout_auc")
            for name in ("logistic", "episode_length", "abs_action", "planted_direction")
        },
        "by_final_end_auc": block["by_final_end"]["rollout_auc"],
    }


def detection_markdown(records: list[dict], args: argparse.Namespace) -> str:
    """The detection table: per member and test set, rollout AUC (95% CI), the planted-direction
    scorer's at the same horizon (the ceiling: the signal as planted), the alarm's TPR/FPR, and the
    baselines' rollout AUC."""
    lines = [
        f"Failure detection over rollouts (alpha 0.1, horizon: each task's shortest rollout; calibration tasks: {args.calibration_tasks}; "
        f"{args.epochs} epochs, seed {args.seed}).",
        "",
        "| member | test set | successes/failures | rollout AUC (95% CI) | planted direction (ceiling) | logistic | steps elapsed | \\|action\\| | by final end | TPR | FPR (95% CI) | lead (median steps) |",
        "|" + "---|" * 12,
    ]
    for r in records:
        for name, d in sorted(r["detection"].items(), key=lambda item: item[0] != "test_unseen"):
            ci = d["rollout_auc_ci"] or [None, None]
            cells = [r["member"], name, f"{d['rollouts']['success']}/{d['rollouts']['failure']}"]
            cells.append(f"{_auc(d['rollout_auc'])} ({_auc(ci[0])}–{_auc(ci[1])})")
            cells += [
                _auc(d[k])
                for k in ("planted_direction_auc", "logistic_auc", "episode_length_auc", "abs_action_auc", "by_final_end_auc", "tpr")
            ]
            fpr_ci = d["fpr_ci"] or [None, None]
            cells.append(f"{_auc(d['fpr'])} ({_auc(fpr_ci[0])}–{_auc(fpr_ci[1])})")
            cells.append("n/a" if d["lead_time_steps_median"] is None else f"{d['lead_time_steps_median']:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(records: list[dict], args: argparse.Namespace) -> str:
    """The table: one row per member, mean held-out AUC of the model and of each baseline."""
    header = "| member | D | test steps | positives | model | logistic | Δ vs logistic | step index | \\|action\\| | planted direction | collapsed | best epoch | s |"
    lines = [
        f"Default recipe (loss {args.loss_type}, {args.epochs} epochs, seed {args.seed}); mean held-out AUC over the dimensions with both classes.",
        "",
        header,
        "|" + "---|" * 13,
    ]
    for r in records:
        cells = [r["member"], str(r["hidden_dim"]), f"{r['test_steps']:,}", f"{100 * r['positive_share']:.2f}%"]
        cells += [_auc(r.get(key)) for key in ("model", "logistic")] + [_signed(r["margin_vs_logistic"])]
        cells += [_auc(r.get(key)) for key in ("step_index", "abs_action", "planted_direction")]
        cells += ["yes" if r["collapsed"] else "no", str(r["best_epoch"]), f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _auc(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    records = []
    with tempfile.TemporaryDirectory(prefix="vlarisk-family-") as scratch:
        for name in args.members:
            records.append(member_record(name, args, Path(scratch)))
            print(f"{name}: model {_auc(records[-1]['model'])}, logistic {_auc(records[-1].get('logistic'))}", flush=True)
    table = markdown(records, args) + "\n" + detection_markdown(records, args)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "records": records}, indent=1, default=_plain) + "\n"
        )
        args.output.with_suffix(".md").write_text(table)


def _plain(value):
    """JSON for numpy scalars and arrays in the raw reports."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else str(value)


if __name__ == "__main__":
    main()
