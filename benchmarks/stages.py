#!/usr/bin/env python
"""One benchmark stage in its own process, so that its peak memory is its own.

Called by ``benchmarks/run.py`` as ``python benchmarks/stages.py STAGE IMPL --workdir DIR --result
FILE [options]``; writes a JSON record (wall seconds, samples, peak RSS of this process and of its
children) to ``--result``. Stages and implementations:

``generate rollouts``   seed0-shaped synthetic rollout pickles (distinct per-step arrays, as real files have)
``prepare naive``       load both pickles whole, build per-step samples, ``np.array`` all hidden states, ``np.save``
``prepare project``     :func:`vlarisk.prepare.prepare_dataset` (streams into the memory-mapped ``.vlarisk`` file)
``train dataloader``    TensorDataset + DataLoader(batch 256, shuffle, 4 workers) over the data loaded into RAM
``train bare``          the training rows in one normalised tensor, batches by ``index_select`` on a permutation
``train project``       :class:`vlarisk.training.Trainer` epoch loop (BatchStream over the memory-mapped dataset)
``train project-fit``   ``Trainer.fit()`` for one epoch: statistics, epoch, validation, checkpoints, end to end
``evaluate naive``      test rows loaded into a tensor, scored in batches of 256, metrics once
``evaluate project``    :func:`vlarisk.evaluation.evaluate` (large no-grad batches from the memory map)

``train`` implementations ending in ``-bf16`` use bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import sys
import time
from pathlib import Path

import numpy as np

SUCCESS_STEPS = (80, 114)  # mean 97, as in the real seed0 pool
FAILURE_STEPS = 220
SEED0 = {"num_success": 200, "num_failure": 374}


def _start() -> tuple[float, float]:
    """Wall clock and CPU seconds so far (this process's threads, plus reaped children: DataLoader workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime


def _since(start: tuple[float, float]) -> dict:
    wall, cpu = _start()
    return {"seconds": wall - start[0], "cpu_seconds": cpu - start[1]}


def paths(workdir: Path) -> dict[str, Path]:
    return {
        "success": workdir / "success_rollouts.pkl",
        "failure": workdir / "failure_rollouts.pkl",
        "planting": workdir / "planting.npz",
        "dataset": workdir / "dataset.vlarisk",
        "naive_hidden": workdir / "naive_hidden.npy",
        "naive_labels": workdir / "naive_labels.npy",
        "split": workdir / "split.json",
        "model_dir": workdir / "model",
    }


# ---------------------------------------------------------------------------------------------
# generate


def generate(args) -> dict:
    """Write seed0-shaped rollouts at ``args.scale``; each step gets its own hidden-state array.

    :class:`vlarisk.synthetic.RolloutSimulator` repeats one array object over an action chunk, which
    pickle stores once; real files store every step's array, so each is copied here to give files
    of the real size (about 0.4 + 1.6 GB at scale 1).
    """
    from vlarisk.io_utils import atomic_path
    from vlarisk.synthetic import RolloutSimulator, SimulationSpec

    p = paths(args.workdir)
    spec = SimulationSpec(
        hidden_dim=args.hidden_dim,
        num_success=max(10, round(SEED0["num_success"] * args.scale)),  # enough for a split with both outcomes
        num_failure=max(10, round(SEED0["num_failure"] * args.scale)),
        success_steps=SUCCESS_STEPS,
        failure_steps=FAILURE_STEPS,
        num_tasks=10,
        with_labels=True,
        layout="dict",
        seed=0,
    )
    simulator = RolloutSimulator(spec)
    steps = 0
    for path, success, count in ((p["success"], True, spec.num_success), (p["failure"], False, spec.num_failure)):
        rollouts = []
        for _ in range(count):
            rollout = simulator.rollout(success)
            for step in rollout["steps"]:
                step["hidden_state"] = step["hidden_state"].copy()
            rollout["features"] = [step["hidden_state"] for step in rollout["steps"]]
            steps += len(rollout["steps"])
            rollouts.append(rollout)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            pickle.dump(
                {"trajectories": rollouts, "metadata": {"generator": "benchmarks/stages.py"}}, handle, protocol=pickle.HIGHEST_PROTOCOL
            )
        del rollouts
    np.savez(p["planting"], directions=simulator.directions)
    return {
        "samples": steps,
        "num_success": spec.num_success,
        "num_failure": spec.num_failure,
        "success_bytes": p["success"].stat().st_size,
        "failure_bytes": p["failure"].stat().st_size,
    }


# ---------------------------------------------------------------------------------------------
# prepare


def prepare_naive(args) -> dict:
    """The straightforward preparation: everything in memory at once, then one big ``np.array``."""
    from vlarisk.labels import heuristic_risk_labels

    p = paths(args.workdir)
    samples = []
    loaded = []
    for path, success in ((p["success"], True), (p["failure"], False)):
        with open(path, "rb") as handle:
            payload = pickle.load(handle)
        loaded.append((payload["trajectories"] if isinstance(payload, dict) else payload, success))
    for rollouts, success in loaded:
        for rollout in rollouts:
            steps = rollout["steps"]
            actions = np.array([s["action"] for s in steps], dtype=np.float32)
            heuristic = heuristic_risk_labels(actions, success)
            for i, step in enumerate(steps):
                label = (step.get("labels") or {}).get("per_dim_risk")
                samples.append(
                    {
                        "hidden_state": step["hidden_state"],
                        "risk_label": np.asarray(label if label is not None else heuristic[i], dtype=np.float32),
                        "action": actions[i],
                        "success": int(success),
                    }
                )
    hidden = np.array([s["hidden_state"] for s in samples], dtype=np.float32)
    labels = np.array([s["risk_label"] for s in samples], dtype=np.float32)
    np.save(p["naive_hidden"], hidden)
    np.save(p["naive_labels"], labels)
    return {"samples": len(samples)}


def prepare_load_only(args) -> dict:
    """Only unpickle both files (safely, one after the other): the floor any preparation pays."""
    from vlarisk.rollouts import load_rollouts

    p = paths(args.workdir)
    steps = 0
    for path in (p["success"], p["failure"]):
        rollouts = load_rollouts(str(path))
        steps += sum(len(r["steps"]) for r in rollouts)
        del rollouts
    return {"samples": steps}


def prepare_project(args) -> dict:
    from vlarisk.prepare import prepare_dataset
    from vlarisk.splits import split_rollouts

    p = paths(args.workdir)
    metadata = prepare_dataset(p["success"], p["failure"], p["dataset"])
    split = split_rollouts(metadata["rollouts"], 0.2, 0.1, seed=0)
    p["split"].write_text(json.dumps(split))
    return {"samples": sum(r["num_kept"] for r in metadata["rollouts"])}


def prepare_project_nosync(args) -> dict:
    """Diagnostic: the project's preparation with fsync/fdatasync made no-ops (what durability costs)."""
    os.fsync = os.fdatasync = lambda fd: None
    return prepare_project(args)


# ---------------------------------------------------------------------------------------------
# train


def _train_setup(args):
    import torch

    from vlarisk.dataset import load_dataset
    from vlarisk.splits import split_rows

    torch.set_num_threads(args.threads)
    p = paths(args.workdir)
    dataset = load_dataset(p["dataset"])
    split = json.loads(p["split"].read_text())
    rows = split_rows(dataset.rollout_id, split)
    return dataset, split, rows


def _model_and_optimizer(hidden_dim: int, seed: int = 0):
    import torch

    from vlarisk.models import RiskPredictor

    torch.manual_seed(seed)
    model = RiskPredictor(hidden_dim, [512, 256], dropout=0.1, activation="relu")
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def _step(model, optimizer, hidden, target, bf16: bool):
    """The training step every implementation shares: MSE, Adam, gradient norm clipped at 1."""
    import torch
    import torch.nn.functional as F

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = F.mse_loss(model(hidden).float(), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.detach()


def _max_steps(args, num_rows: int) -> int:
    per_epoch = -(-num_rows // args.batch_size)
    return per_epoch if args.train_steps <= 0 else min(args.train_steps, per_epoch)


def _in_ram_normalised(dataset, rows, mean, std):
    """``hidden[rows]`` copied into one float32 tensor and standardised in place (not timed)."""
    import torch

    block = torch.empty((len(rows), dataset.hidden_dim), dtype=torch.float32)
    for start in range(0, len(rows), 8192):
        part = torch.from_numpy(np.asarray(dataset.hidden[rows[start : start + 8192]], dtype=np.float32))
        block[start : start + len(part)] = (part - mean) / std
    return block


def train_dataloader(args) -> dict:
    import torch
    from torch.utils.data import DataLoader, Subset, TensorDataset

    from vlarisk.normalization import feature_statistics

    dataset, _, rows = _train_setup(args)
    mean, std = (torch.from_numpy(s) for s in feature_statistics(dataset.hidden, rows["train"]))
    everything = _in_ram_normalised(dataset, np.arange(len(dataset)), mean, std)  # the reference holds all steps
    labels = torch.from_numpy(np.asarray(dataset.labels, dtype=np.float32))
    data = Subset(TensorDataset(everything, labels), rows["train"].tolist())
    model, optimizer = _model_and_optimizer(dataset.hidden_dim)
    model.train()
    steps = _max_steps(args, len(rows["train"]))
    torch.manual_seed(1)
    start = _start()
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=4)
    samples = 0
    for i, (hidden, target) in enumerate(loader):
        if i == steps:
            break
        _step(model, optimizer, hidden, target, args.bf16)
        samples += len(target)
    del loader
    return {"samples": samples, **_since(start), "steps": min(i + 1, steps)}


def train_bare(args) -> dict:
    import torch

    from vlarisk.normalization import feature_statistics

    dataset, _, rows = _train_setup(args)
    mean, std = (torch.from_numpy(s) for s in feature_statistics(dataset.hidden, rows["train"]))
    hidden = _in_ram_normalised(dataset, rows["train"], mean, std)
    labels = torch.from_numpy(np.asarray(dataset.labels[rows["train"]], dtype=np.float32))
    model, optimizer = _model_and_optimizer(dataset.hidden_dim)
    model.train()
    steps = _max_steps(args, len(rows["train"]))
    torch.manual_seed(1)
    start = _start()
    order = torch.randperm(len(hidden))
    samples = 0
    for i in range(steps):
        index = order[i * args.batch_size : (i + 1) * args.batch_size]
        _step(model, optimizer, hidden.index_select(0, index), labels.index_select(0, index), args.bf16)
        samples += len(index)
    return {"samples": samples, **_since(start), "steps": steps}


def train_project(args) -> dict:
    """The Trainer's own epoch loop over its BatchStream, for ``--train-steps`` batches."""
    from vlarisk.sources import Source
    from vlarisk.training import Trainer, TrainingConfig

    dataset, split, rows = _train_setup(args)
    config = TrainingConfig(epochs=1, batch_size=args.batch_size, device="cpu", bf16=args.bf16, seed=0)
    tick = time.perf_counter()
    trainer = Trainer([Source("bench", dataset, split)], config, args.workdir / "project_model", "bench", log=lambda _: None)
    setup = time.perf_counter() - tick
    steps = _max_steps(args, len(rows["train"]))
    start = _start()
    stream = trainer.batches()
    trainer._train_epoch(stream, 1, max_batches=steps)
    samples = min(steps * args.batch_size, len(stream))
    return {"samples": samples, **_since(start), "steps": steps, "setup_seconds": setup}


def train_project_fit(args) -> dict:
    """``Trainer.fit()`` for one full epoch, end to end (statistics, validation, checkpoints)."""
    from vlarisk.sources import Source
    from vlarisk.training import Trainer, TrainingConfig

    dataset, split, rows = _train_setup(args)
    config = TrainingConfig(epochs=1, batch_size=args.batch_size, device="cpu", bf16=args.bf16, seed=0)
    start = _start()
    trainer = Trainer([Source("bench", dataset, split)], config, paths(args.workdir)["model_dir"], "bench", log=lambda _: None)
    outcome = trainer.fit()
    return {
        "samples": len(rows["train"]),
        **_since(start),
        "steps": -(-len(rows["train"]) // args.batch_size),
        "epoch_samples_per_second": outcome.history["samples_per_second"][-1],
    }


# ---------------------------------------------------------------------------------------------
# evaluate


def _evaluation_model(args, dataset):
    """The fit stage's best model when it exists (else a seeded fresh one with training statistics)."""
    import torch

    from vlarisk.checkpoints import predictor_from_checkpoint, read_checkpoint
    from vlarisk.normalization import feature_statistics

    checkpoint_path = paths(args.workdir)["model_dir"] / "best_model.pt"
    if checkpoint_path.exists():
        wrapped = predictor_from_checkpoint(read_checkpoint(checkpoint_path), str(checkpoint_path))
        return wrapped.predictor, wrapped.mean, wrapped.std
    model, _ = _model_and_optimizer(dataset.hidden_dim)
    split = json.loads(paths(args.workdir)["split"].read_text())
    from vlarisk.splits import split_rows

    mean, std = feature_statistics(dataset.hidden, split_rows(dataset.rollout_id, split)["train"])
    return model, torch.from_numpy(mean), torch.from_numpy(std)


def evaluate_naive(args) -> dict:
    import torch

    from vlarisk.metrics import test_metrics
    from vlarisk.thresholds import positive_thresholds

    dataset, split, rows = _train_setup(args)
    model, mean, std = _evaluation_model(args, dataset)
    start = _start()
    hidden = torch.from_numpy(np.array(dataset.hidden[rows["test"]], dtype=np.float32))
    labels = np.asarray(dataset.labels[rows["test"]], dtype=np.float32)
    thresholds = positive_thresholds(np.asarray(dataset.labels[rows["train"]]), 0.5)
    model.eval()
    outputs = []
    with torch.no_grad():
        for first in range(0, len(hidden), 256):
            outputs.append(model((hidden[first : first + 256] - mean) / std))
    report = test_metrics(torch.cat(outputs).numpy(), labels, thresholds)
    return {"samples": len(labels), **_since(start), "mean_auc": report["test_metrics"]["mean_auc"]}


def evaluate_project(args) -> dict:
    import torch

    from vlarisk.evaluation import evaluate
    from vlarisk.models import NormalizedRiskPredictor
    from vlarisk.sources import Source

    dataset, split, rows = _train_setup(args)
    model, mean, std = _evaluation_model(args, dataset)
    source = Source("bench", dataset, split)
    start = _start()
    report = evaluate(NormalizedRiskPredictor(model, mean, std), source, source.thresholds(0.5), torch.device("cpu"))
    return {"samples": report["num_samples"], **_since(start), "mean_auc": report["test_metrics"]["mean_auc"]}


STAGES = {
    ("generate", "rollouts"): generate,
    ("prepare", "naive"): prepare_naive,
    ("prepare", "load-only"): prepare_load_only,
    ("prepare", "project"): prepare_project,
    ("prepare", "project-nosync"): prepare_project_nosync,
    ("train", "dataloader"): train_dataloader,
    ("train", "bare"): train_bare,
    ("train", "project"): train_project,
    ("train", "project-fit"): train_project_fit,
    ("evaluate", "naive"): evaluate_naive,
    ("evaluate", "project"): evaluate_project,
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage")
    parser.add_argument("impl")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--hidden-dim", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=0, help="batches to time (0: one full epoch)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    impl = args.impl
    args.bf16 = impl.endswith("-bf16")
    if args.bf16:
        impl = impl[: -len("-bf16")]
    function = STAGES.get((args.stage, impl))
    if function is None:
        raise SystemExit(f"unknown stage/implementation {args.stage}/{args.impl}; known: {sorted(STAGES)}")
    import vlarisk  # noqa: F401  (package start-up is not stage work; stages needing torch import it before their timed section)

    if args.stage == "prepare":  # deleting the previous repeat's multi-GB output is not preparation work
        for name in ("dataset", "naive_hidden", "naive_labels"):
            paths(args.workdir)[name].unlink(missing_ok=True)
    os.sync()  # start with no dirty pages of earlier stages (e.g. GBs of fresh pickles) being written back

    start = _start()
    record = function(args)
    if "seconds" not in record:
        record.update(_since(start))
    record["maxrss_self_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    record["maxrss_children_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    args.result.write_text(json.dumps(record))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
