#!/usr/bin/env python
"""Failure detection on every member of the generator family, over several leave-tasks-out splits.

For each member of ``GENERATOR_FAMILY`` in ``benchmarks/generator_family.py`` (or those named), simulate and
prepare the rollouts once, then, for each of ``--task-splits`` splits (``unseen_task_fraction`` of
the tasks unseen, as ``config/paper.yaml``; :func:`vlarisk.data.splits.split_rollouts`), train the default
recipe and score detection as ``results.json["detection"]`` does. Two tables, per member and test
set (unseen tasks first), mean ± SD over the splits for the model and the logistic, cosine kNN,
Mahalanobis and steps-elapsed baselines:

- SAFE's earliest-stop rollout AUC, and the deployed monitor at alpha (whole-episode conformal
  threshold on full episodes): balanced accuracy, relative detection time (misses count 1.0), TPR, FPR;
- the seen-task deployed FPR of every split against alpha, with its exact (Clopper-Pearson) interval.

    python benchmarks/detection_family.py --output benchmarks/results/detection_family.json
    python benchmarks/detection_family.py --members embedded onset --epochs 4 --rollouts 0.5
    python benchmarks/detection_family.py --results results/models/synthetic_a/results.json \
        results/models/synthetic_a/task-split-{1,2}/results.json      # a pipeline run's splits
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from generator_family import GENERATOR_FAMILY, prepare_member, scaled_member, score_prepared

from vlarisk.core.settings import TrainingConfig
from vlarisk.data.splits import TEST_SETS
from vlarisk.data.task_splits import SPLIT_METRICS, fpr_within_alpha, scorer_summaries
from vlarisk.score.detection import DEFAULT_ALPHA

# Scorers compared, as named in a detection block ("model": the block itself), with their labels.
SCORERS = {"model": "model", "logistic": "logistic", "knn": "cosine kNN", "mahalanobis": "Mahalanobis", "episode_length": "steps elapsed"}
# Summarised over splits: SAFE's earliest-stop AUC and the deployed monitor's numbers.
METRICS = {
    **SPLIT_METRICS,
    "relative_detection_time": ("deployed", "relative_detection_time_mean"),
    "tpr": ("deployed", "tpr"),
    "fpr": ("deployed", "fpr"),
}
SEEN = TEST_SETS[0]
# Keys of a detection block (and of each baseline's) kept in the records: the headline numbers, not the curves.
KEPT = ("alpha", "threshold", "rollout_auc", "rollout_ap", "ci95", "n_rollouts", "deployed", "horizon", "threshold_fit")
KEPT += ("conformal_valid", "conformal_reason", "by_final_end", "per_task_auc")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", nargs="*", default=list(GENERATOR_FAMILY), choices=list(GENERATOR_FAMILY))
    parser.add_argument("--task-splits", type=int, default=3, help="leave-tasks-out splits per member (default: %(default)s)")
    parser.add_argument("--unseen-task-fraction", type=float, default=0.3, help="share of tasks unseen (default: %(default)s)")
    parser.add_argument(
        "--test-fraction", type=float, default=0.3, help="test_seen share of the seen tasks' rollouts (default: %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs, help="training epochs (default: %(default)s)")
    parser.add_argument("--rollouts", type=float, default=1.0, help="scale every member's rollout count (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="training and split seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        default=None,
        help="instead of training: tabulate a pipeline run's results.json of each task split (split 0 first)",
    )
    parser.add_argument("--name", default="pipeline", help="the row label of --results (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=None, help="write every record (JSON) and the tables (.md beside it)")
    return parser.parse_args(argv)


def member_record(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Simulate one member once, train and score it on each task split; its summary over the splits."""
    spec = scaled_member(name, rollouts=args.rollouts)
    config = TrainingConfig(epochs=args.epochs, seed=args.seed)
    dataset, planting = prepare_member(spec, workdir / name)
    started = time.perf_counter()
    detections = []
    for k in range(args.task_splits):
        report = score_prepared(
            dataset,
            planting,
            workdir / name / f"task-split-{k}",
            config,
            args.test_fraction,
            unseen_task_fraction=args.unseen_task_fraction,
            task_split=k,
        )
        detections.append(report["detection"])
    return {**summarised(name, detections), "hidden_dim": spec.hidden_dim, "seconds": time.perf_counter() - started}


def summarised(name: str, detections: list[dict]) -> dict:
    """The record of one source from its ``detection`` blocks, one per task split (split 0 first)."""
    return {
        "member": name,
        "sets": {
            test_set: scorer_summaries([d.get(test_set) for d in detections], list(SCORERS), METRICS) for test_set in _sets(detections)
        },
        "seen_fpr": [fpr_within_alpha(d[SEEN]["deployed"], d[SEEN]["alpha"]) if SEEN in d else None for d in detections],
        "detection": [{test_set: headline(block) for test_set, block in d.items()} for d in detections],
    }


def headline(block: dict) -> dict:
    """A detection block with its baselines, cut to the keys in :data:`KEPT`."""
    kept = {key: block[key] for key in KEPT if key in block}
    kept["baselines"] = {
        name: {key: b[key] for key in KEPT if key in b} for name, b in block.get("baselines", {}).items() if isinstance(b, dict)
    }
    return kept


def _sets(detections: list[dict]) -> list[str]:
    """The test sets any split scored, unseen tasks first."""
    return sorted({name for d in detections for name in d}, key=lambda name: name != TEST_SETS[1])


def detection_markdown(records: list[dict], args: argparse.Namespace) -> str:
    """Per member, test set and scorer: mean ± SD over the splits of every summarised metric."""
    lines = [
        f"Failure detection over {_setting(args)}. Mean ± SD over the splits. AUC: SAFE's earliest-stop rollout AUC; "
        f"the rest: the deployed monitor at alpha {DEFAULT_ALPHA:g} (whole-episode conformal threshold, full episodes); "
        "RDT: mean relative detection time, misses 1.0.",
        "",
        "| member | test set | successes/failures per split | scorer | earliest-stop AUC | bal. acc. | RDT | TPR | FPR |",
        "|" + "---|" * 9,
    ]
    for r in records:
        for test_set, summary in r["sets"].items():
            counts = ", ".join("n/a" if n is None else f"{n['success']}/{n['failure']}" for n in summary["n_rollouts"])
            for scorer, label in SCORERS.items():
                row = summary["scorers"][scorer]
                cells = [r["member"], test_set.removeprefix("test_"), counts, label]
                cells += [_mean_sd(row[metric]) for metric in METRICS]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _setting(args: argparse.Namespace) -> str:
    """What was run: the pipeline's splits, or the benchmark's training settings."""
    if args.results:
        return f"{len(args.results)} task splits of a pipeline run (results.json of each: {', '.join(map(str, args.results))})"
    return (
        f"{args.task_splits} leave-tasks-out splits ({args.unseen_task_fraction:.0%} of tasks unseen; test_seen "
        f"{args.test_fraction:.0%} of the seen tasks' rollouts; default recipe, {args.epochs} epochs; rollouts x{args.rollouts}; seed {args.seed})"
    )


def fpr_markdown(records: list[dict]) -> str:
    """Per member, the model's seen-task deployed FPR of every split against alpha, with its exact interval."""
    lines = [
        "Seen-task deployed FPR of the model per split, [exact 95% Clopper-Pearson interval]; "
        "'ok': the interval reaches alpha or below (the data do not show a rate above alpha).",
        "",
        "| member | alpha | " + " | ".join(f"split {k}" for k in range(max(len(r["seen_fpr"]) for r in records))) + " | all ok |",
        "|" + "---|" * (3 + max(len(r["seen_fpr"]) for r in records)),
    ]
    for r in records:
        checks = r["seen_fpr"]
        alpha = next((c["alpha"] for c in checks if c), None)
        cells = [r["member"], "n/a" if alpha is None else f"{alpha:g}"] + [_fpr_cell(c) for c in checks]
        cells.append(_verdict(checks))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _verdict(checks: list[dict | None]) -> str:
    """``yes`` when every split's FPR is consistent with alpha, ``no`` when one is not, else how many were undefined."""
    verdicts = [c["consistent"] if c else None for c in checks]
    if False in verdicts:
        return "no"
    undefined = verdicts.count(None)
    return "yes" if not undefined else f"n/a on {undefined} of {len(verdicts)}"


def _fpr_cell(check: dict | None) -> str:
    """One split's FPR with its interval and verdict."""
    if not check or check["consistent"] is None:
        return "n/a"
    low, high = check["ci95"]
    return f"{check['fpr']:.3f} [{low:.3f}, {high:.3f}] {'ok' if check['consistent'] else 'ABOVE'}"


def _mean_sd(summary: dict) -> str:
    """``mean ± sd`` of a split summary; ``n/a`` when undefined."""
    if summary["mean"] is None:
        return "n/a"
    return f"{summary['mean']:.3f}" + ("" if summary["sd"] is None else f" ± {summary['sd']:.3f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.results:
        records = [summarised(args.name, [json.loads(path.read_text())["detection"] for path in args.results])]
        if args.output:
            write(records, args)
        print(detection_markdown(records, args) + "\n" + fpr_markdown(records))
        return
    torch.set_num_threads(args.threads)
    records = []
    with tempfile.TemporaryDirectory(prefix="vlarisk-detection-family-") as scratch:
        for name in args.members:
            records.append(member_record(name, args, Path(scratch)))
            unseen = records[-1]["sets"].get(TEST_SETS[1], {}).get("scorers", {}).get("model", {}).get("rollout_auc", {})
            print(f"{name}: unseen model AUC {_mean_sd(unseen) if unseen else 'n/a'} ({records[-1]['seconds']:.0f} s)", flush=True)
            if args.output:
                write(records, args)
    print(detection_markdown(records, args) + "\n" + fpr_markdown(records))


def write(records: list[dict], args: argparse.Namespace) -> None:
    """The records so far (JSON) and their tables (.md beside it)."""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "records": records}
    args.output.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    args.output.with_suffix(".md").write_text(detection_markdown(records, args) + "\n" + fpr_markdown(records))


if __name__ == "__main__":
    main()
