#!/usr/bin/env python
"""What early stopping costs in quality and saves in epochs, on members of the generator family.

For each member, one run of every epoch (``--patience 0``) scores the held-out test rows after
each epoch. Training is seeded per ``(seed, epoch)``, so a run with patience ``p`` is this run's
first epochs up to its stop (``tests/test_early_stopping.py`` holds it to that); its kept
checkpoint is the best epoch by validation score up to the stop, a later epoch counting as better
only when its score is more than ``min_delta`` higher. One table per ``min_delta`` gives, per
patience, the stop epoch and the held-out mean AUC of the kept checkpoint minus that of the full
run's (kept by the same ``min_delta``); its last column is what the ``min_delta`` itself changes
in the full run's kept checkpoint against ``min_delta`` 0.

    python benchmarks/early_stopping.py                           # every member, 50 epochs
    python benchmarks/early_stopping.py --members sparse weak --patience 5 10 --min-delta 0 0.002
    python benchmarks/early_stopping.py --seeds 0 1 --seed0-scale 0.5 --output benchmarks/results/early_stopping.json
    python benchmarks/early_stopping.py --members --seed0-scale 1 --output /tmp/seed0.json   # seed0-shaped data only
    python benchmarks/early_stopping.py --members --runs benchmarks/results/early_stopping.json /tmp/seed0.json  # tables only
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from generator_family import GENERATOR_FAMILY, scaled_member

from vlarisk.core.device import limit_threads
from vlarisk.core.settings import DEFAULT_MIN_DELTA, TrainingConfig

TOLERANCE = 0.005  # the largest held-out AUC loss early stopping may cost


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", nargs="*", default=list(GENERATOR_FAMILY), choices=list(GENERATOR_FAMILY))
    parser.add_argument("--epochs", type=int, default=50, help="epochs of the full run (default: %(default)s)")
    parser.add_argument("--patience", type=int, nargs="*", default=[3, 5, 8, 10, 15], help="patiences to compare (default: %(default)s)")
    parser.add_argument(
        "--min-delta", type=float, nargs="*", default=[0.0, DEFAULT_MIN_DELTA], help="min-deltas to compare (default: %(default)s)"
    )
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="also the runs of earlier --output files (no training)")
    parser.add_argument("--rollouts", type=float, default=1.0, help="scale every member's rollout count (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0], help="training and split seeds (default: %(default)s)")
    parser.add_argument(
        "--seed0-scale",
        type=float,
        nargs="*",
        default=[],
        help="also seed0-shaped sources at these multiples of the seed0 pool (benchmarks/stages.py's data and split; training seed 0)",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=None, help="write every record (JSON) and the table (.md beside it)")
    return parser.parse_args(argv)


def member_source(name: str, args: argparse.Namespace, seed: int, workdir: Path):
    """A generator-family member's source, split by rollout with ``seed``."""
    from generator_family import prepare_member

    from vlarisk.train.sources import open_source

    dataset, _ = prepare_member(scaled_member(name, rollouts=args.rollouts), workdir)
    return open_source(name, str(dataset), test_fraction=0.3, seed=seed)


def seed0_source(scale: float, workdir: Path):
    """A seed0-shaped source (4096-D, 8-step chunks) with the split ``benchmarks/time_to_quality.py`` trains on."""
    import stages

    from vlarisk.train.sources import open_source

    shape = argparse.Namespace(workdir=workdir, scale=scale, hidden_dim=4096)
    stages.generate(shape)
    stages.prepare_project(shape)
    for name in ("success", "failure"):
        stages.paths(workdir)[name].unlink()
    return open_source(f"seed0_x{scale:g}", str(stages.paths(workdir)["dataset"]), str(stages.paths(workdir)["split"]))


def full_run_scores(source, args: argparse.Namespace, seed: int, workdir: Path) -> dict:
    """Every epoch's validation selection score and loss, and held-out mean AUC, for one source and seed."""
    from vlarisk.model.inference import predict_rows
    from vlarisk.score.metrics import test_metrics
    from vlarisk.train.training import Trainer, selection_score

    config = TrainingConfig(epochs=args.epochs, patience=0, seed=seed, device="cpu")
    trainer = Trainer([source], config, workdir / "model", source.name, log=lambda _: None)
    part, test_rows = trainer.parts[0], source.rows["test"]
    held_out, record = [], trainer._record

    def record_and_score(epoch, train_loss, metrics, seconds, rate):
        record(epoch, train_loss, metrics, seconds, rate)
        prediction = predict_rows(trainer.model, source.dataset.hidden, test_rows, part.mean, part.std, trainer.device)
        held_out.append(test_metrics(prediction, source.labels("test"), part.label_cutoffs)["test_metrics"]["mean_auc"])

    trainer._record = record_and_score
    started = time.perf_counter()
    outcome = trainer.fit()
    seconds = time.perf_counter() - started
    return {
        "member": source.name,
        "seed": seed,
        "scores": [selection_score(metrics) for metrics in outcome.history["val_metrics"]],
        "val_loss": outcome.history["val_loss"],
        "held_out_auc": held_out,
        "epoch_seconds": seconds / args.epochs,
    }


def kept_epoch(scores: list, patience: int, min_delta: float) -> tuple[int, int]:
    """(stop epoch, kept best epoch) of a run with ``patience`` (0: every epoch) and ``min_delta``, by a plain loop."""
    best_epoch, best_healthy, best = 0, False, float("-inf")
    for epoch, (healthy, value) in enumerate(scores, start=1):
        if (healthy and not best_healthy) or (healthy == best_healthy and value > best + min_delta):
            best_epoch, best_healthy, best = epoch, healthy, value
        if patience and epoch - best_epoch >= patience:
            return epoch, best_epoch
    return len(scores), best_epoch


def rows(runs: list[dict], patiences: list[int], min_deltas: list[float]) -> list[dict]:
    """Per run, min-delta and patience: stop epoch, kept epoch and held-out AUC change against the full run."""
    table = []
    for run in runs:
        auc_of = run["held_out_auc"]
        plain_full_auc = auc_of[kept_epoch(run["scores"], 0, 0.0)[1] - 1]
        for min_delta in min_deltas:
            _, full_best = kept_epoch(run["scores"], 0, min_delta)
            for patience in patiences:
                stop, best = kept_epoch(run["scores"], patience, min_delta)
                table.append(
                    {
                        "member": run["member"],
                        "seed": run["seed"],
                        "min_delta": min_delta,
                        "patience": patience,
                        "stop": stop,
                        "best": best,
                        "full_best": full_best,
                        "full_auc": auc_of[full_best - 1],
                        "full_vs_min_delta_0": auc_of[full_best - 1] - plain_full_auc,
                        "auc": auc_of[best - 1],
                        "delta": auc_of[best - 1] - auc_of[full_best - 1],
                    }
                )
    return table


def markdown(table: list[dict], patiences: list[int], min_deltas: list[float], epochs: int) -> str:
    """Per min-delta, one line per member and seed (stop epoch and AUC change per patience), then the worst case per patience."""
    lines = []
    members = [r["member"] for r in table]
    keys = sorted({(r["member"], r["seed"]) for r in table}, key=lambda key: (members.index(key[0]), key[1]))
    for min_delta in min_deltas:
        part = [r for r in table if r["min_delta"] == min_delta]
        lines += [
            f"Min-delta {min_delta:g}: early stopping against every one of {epochs} epochs: stop epoch / held-out mean AUC change of the kept checkpoint.",
            "",
            "| member | seed | full-run best epoch | full-run AUC | "
            + " | ".join(f"patience {p}" for p in patiences)
            + " | full run vs min-delta 0 |",
            "|" + "---|" * (5 + len(patiences)),
        ]
        for member, seed in keys:
            cells = [r for r in part if (r["member"], r["seed"]) == (member, seed)]
            lines.append(
                f"| {member} | {seed} | {cells[0]['full_best']} | {cells[0]['full_auc']:.4f} | "
                + " | ".join(f"{c['stop']} / {c['delta']:+.4f}" for c in cells)
                + f" | {cells[0]['full_vs_min_delta_0']:+.4f} |"
            )
        worst = [min(r["delta"] for r in part if r["patience"] == p) for p in patiences]
        mean_stop = [np.mean([r["stop"] for r in part if r["patience"] == p]) for p in patiences]
        full = [r["full_vs_min_delta_0"] for r in part if r["patience"] == patiences[0]]
        lines.append(
            "| **worst change / mean stop** | | | | "
            + " | ".join(f"{w:+.4f} / {s:.1f}" for w, s in zip(worst, mean_stop, strict=True))
            + f" | {min(full):+.4f} worst, {np.mean(full):+.4f} mean |"
        )
        ok = [p for p, w in zip(patiences, worst, strict=True) if w >= -TOLERANCE]
        lines += ["", f"Patiences within {TOLERANCE} of the full run on every row: {ok or 'none'}.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    limit_threads(args.threads)
    runs = [run for path in args.runs for run in json.loads(path.read_text())["runs"]]
    with tempfile.TemporaryDirectory(prefix="vlarisk-early-") as scratch:
        for name in args.members:
            for seed in args.seeds:
                workdir = Path(scratch) / f"{name}-{seed}"
                runs.append(full_run_scores(member_source(name, args, seed, workdir), args, seed, workdir))
                print(f"{name} seed {seed}: {runs[-1]['epoch_seconds']:.2f} s/epoch", flush=True)
        for scale in args.seed0_scale:
            workdir = Path(scratch) / f"seed0-{scale}"
            workdir.mkdir()
            runs.append(full_run_scores(seed0_source(scale, workdir), args, 0, workdir))
            print(f"seed0 x{scale:g}: {runs[-1]['epoch_seconds']:.2f} s/epoch", flush=True)
    table = rows(runs, args.patience, args.min_delta)
    text = markdown(table, args.patience, args.min_delta, args.epochs)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "rows": table}, indent=1) + "\n"
        )
        args.output.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
