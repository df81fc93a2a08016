#!/usr/bin/env python
"""One benchmark stage in its own process, so that its peak memory is its own.

Called by ``benchmarks/run.py`` as ``python benchmarks/stages.py STAGE IMPL --workdir DIR --result
FILE [options]``; writes a JSON record (wall seconds, samples, peak RSS of this process and of its
children) to ``--result``. Stages and implementations:

``generate rollouts``   seed0-shaped synthetic rollout pickles (distinct per-step arrays, as real files have)
``prepare reference``   the reference code's recipe: both pickles loaded whole, a sample dict per step (its own
                        copy of the hidden state), the list pickled to the guide's ``*_dataset.pkl``
``prepare naive``       load both pickles whole, build per-step samples, ``np.array`` all hidden states, ``np.save``
``prepare project``     :func:`vlarisk.data.prepare.prepare_dataset` (distinct states streamed into the ``.npy`` dataset directory)
``prepare project-perstep``  the same with ``deduplicate=False`` (one stored state per step), for the per-step training rows
``train dataloader``    TensorDataset + DataLoader(batch 256, shuffle, 0 workers on <=2 cores) over the training rows in RAM
``train bare``          the training rows in one normalised tensor, batches by ``index_select`` on a permutation
``train project``       :class:`vlarisk.train.training.Trainer` epoch loop (BatchStream over the memory-mapped dataset)
``train project-fit``   ``Trainer.fit()`` for one epoch: statistics, epoch, validation, checkpoints, end to end
``train3 reference``    whole command, 3 epochs (``--epochs``), the reference code's recipe: the ``*_dataset.pkl`` loaded whole and
                        copied into arrays, a per-sample Dataset and DataLoader, validation every epoch, then test AUC
``train3 reference-tuned``  the same recipe as a user would tune it: only the training rows, read from the
                        ``.npy`` per-step dataset into one tensor, a TensorDataset, no per-epoch validation
``train3 project``      whole command, 3 epochs: ``Trainer.fit()`` on the deduplicated dataset, then test AUC
``train3 project-perstep``  the same on the per-step dataset
``evaluate naive``      test rows loaded into a tensor, scored in batches of 256, metrics once
``evaluate project``    :func:`vlarisk.score.evaluation.evaluate` (large no-grad batches from the memory map)

``train`` implementations ending in ``-bf16`` use bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
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
        "dataset_perstep": workdir / "dataset_perstep.vlarisk",
        "reference_dataset": workdir / "reference_dataset.pkl",
        "naive_hidden": workdir / "naive_hidden.npy",
        "naive_labels": workdir / "naive_labels.npy",
        "split": workdir / "split.json",
        "model_dir": workdir / "model",
    }


# ---------------------------------------------------------------------------------------------
# generate


def generate(args) -> dict:
    """Write seed0-shaped rollouts at ``args.scale``; each step gets its own hidden-state array.

    :class:`vlarisk.data.synthetic.RolloutSimulator` repeats one array object over an action chunk, which
    pickle stores once; real files store every step's array, so each is copied here to give files
    of the real size (about 0.4 + 1.6 GB at scale 1).
    """
    from vlarisk.core.io_utils import atomic_path
    from vlarisk.data.synthetic import RolloutSimulator, SimulationSpec

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


def _load_whole(p: dict[str, Path]) -> list[tuple[list, bool]]:
    """Both rollout files unpickled whole with plain ``pickle`` (as the baselines do): ``[(rollouts, success)]``."""
    loaded = []
    for path, success in ((p["success"], True), (p["failure"], False)):
        with open(path, "rb") as handle:
            payload = pickle.load(handle)
        loaded.append((payload["trajectories"] if isinstance(payload, dict) else payload, success))
    return loaded


def prepare_reference(args) -> dict:
    """The reference code's preparation (REFERENCE.md): both pickles loaded whole (plain ``pickle``),
    one sample dict per step holding its own float32 copy of the hidden state, and the list pickled
    to the guide's ``*_dataset.pkl`` (``{"dataset": [...], "metadata": {...}}``)."""
    from vlarisk.data.labels import failure_window, heuristic_risk_labels

    p = paths(args.workdir)
    loaded = _load_whole(p)
    samples, labelled = [], 0
    for rollouts, success in loaded:
        for rollout in rollouts:
            steps = rollout["steps"]
            actions = np.array([s["action"] for s in steps], dtype=np.float32)
            heuristic = heuristic_risk_labels(actions, success)
            window = failure_window(len(steps))
            for i, step in enumerate(steps):
                label = (step.get("labels") or {}).get("per_dim_risk")
                labelled += label is not None
                left = len(steps) - i
                samples.append(
                    {
                        "hidden_state": np.array(step["hidden_state"], dtype=np.float32),
                        "risk_label": np.asarray(label if label is not None else heuristic[i], dtype=np.float32),
                        "action": actions[i],
                        "time_to_failure": -1 if success else left,
                        "fail_within_k": int(not success and left <= window),
                        "success": int(success),
                        "collision": int(bool(step.get("collision", False))),
                    }
                )
    metadata = {
        "num_samples": len(samples),
        "num_success_rollouts": len(loaded[0][0]),
        "num_failure_rollouts": len(loaded[1][0]),
        "num_with_labels": labelled,
        "num_without_labels": len(samples) - labelled,
        "hidden_dim": len(samples[0]["hidden_state"]),
    }
    with open(p["reference_dataset"], "wb") as handle:
        pickle.dump({"dataset": samples, "metadata": metadata}, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return {"samples": len(samples), "dataset_bytes": _tree_bytes(p["reference_dataset"])}


def prepare_naive(args) -> dict:
    """The straightforward preparation: everything in memory at once, then one big ``np.array``."""
    from vlarisk.data.labels import heuristic_risk_labels

    p = paths(args.workdir)
    samples = []
    loaded = _load_whole(p)
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
    return {"samples": len(samples), "dataset_bytes": _tree_bytes(p["naive_hidden"]) + _tree_bytes(p["naive_labels"])}


def prepare_load_only(args) -> dict:
    """Only unpickle both files (safely, one after the other): the floor any preparation pays."""
    from vlarisk.data.rollouts import load_rollouts

    p = paths(args.workdir)
    steps = 0
    for path in (p["success"], p["failure"]):
        rollouts = load_rollouts(str(path))
        steps += sum(len(r["steps"]) for r in rollouts)
        del rollouts
    return {"samples": steps}


def _tree_bytes(path: Path) -> int:
    """Bytes on disk of a file, or of every file under a directory."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def prepare_project(args, deduplicate: bool = True) -> dict:
    from vlarisk.data.prepare import prepare_dataset
    from vlarisk.data.splits import plain_split

    p = paths(args.workdir)
    output = p["dataset"] if deduplicate else p["dataset_perstep"]
    metadata = prepare_dataset(p["success"], p["failure"], output, deduplicate=deduplicate)
    split = plain_split(metadata["rollouts"], 0.2, 0.1, seed=0)
    p["split"].write_text(json.dumps(split))
    return {"samples": sum(r["num_kept"] for r in metadata["rollouts"]), "dataset_bytes": _tree_bytes(output)}


def prepare_project_perstep(args) -> dict:
    """The project's preparation storing one state per step (the data the per-step training rows read)."""
    return prepare_project(args, deduplicate=False)


def prepare_project_nosync(args) -> dict:
    """Diagnostic: the project's preparation with fsync/fdatasync made no-ops (what durability costs)."""
    os.fsync = os.fdatasync = lambda fd: None
    return prepare_project(args)


# ---------------------------------------------------------------------------------------------
# train


def _train_setup(args, name: str = "dataset"):
    import torch

    from vlarisk.data.dataset import load_dataset
    from vlarisk.data.splits import split_rows

    torch.set_num_threads(args.threads)
    p = paths(args.workdir)
    dataset = load_dataset(p[name])
    split = json.loads(p["split"].read_text())
    rows = split_rows(dataset.rollout_id, split)
    return dataset, split, rows


def _model_and_optimizer(hidden_dim: int, seed: int = 0):
    import torch

    from vlarisk.model.models import RiskPredictor

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


def loader_workers() -> int:
    """DataLoader workers as a user would tune them: none on 2 cores or fewer (measured faster
    there: workers only compete with the training threads), else at most one per spare core."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores - 1)


def train_dataloader(args) -> dict:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from vlarisk.train.normalization import feature_statistics

    dataset, _, rows = _train_setup(args)
    mean, std = (torch.from_numpy(s) for s in feature_statistics(dataset.hidden, rows["train"]))
    hidden = _in_ram_normalised(dataset, rows["train"], mean, std)  # the same rows as the project's loop
    labels = torch.from_numpy(np.asarray(dataset.labels[rows["train"]], dtype=np.float32))
    data = TensorDataset(hidden, labels)
    model, optimizer = _model_and_optimizer(dataset.hidden_dim)
    model.train()
    steps = _max_steps(args, len(rows["train"]))
    torch.manual_seed(1)
    start = _start()
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=loader_workers())
    samples = 0
    for i, (hidden, target) in enumerate(loader):
        if i == steps:
            break
        _step(model, optimizer, hidden, target, args.bf16)
        samples += len(target)
    del loader
    return {"samples": samples, **_since(start), "steps": min(i + 1, steps), "workers": loader_workers()}


def train_bare(args) -> dict:
    import torch

    from vlarisk.train.normalization import feature_statistics

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
    from vlarisk.core.settings import TrainingConfig
    from vlarisk.train.sources import Source
    from vlarisk.train.training import Trainer

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
    from vlarisk.core.settings import TrainingConfig
    from vlarisk.train.sources import Source
    from vlarisk.train.training import Trainer

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
# train3: whole commands, three epochs, test AUC (the timed section starts before the data is opened)


def _collapse_facts(prediction: np.ndarray, report: dict) -> dict:
    from vlarisk.model.collapse import collapse_reasons

    return {
        "mean_auc": report["test_metrics"]["mean_auc"],
        "prediction_std_min": float(prediction.std(axis=0).min()),
        "collapse": collapse_reasons(prediction, report["test_metrics"]["mean_auc"]),
    }


def _test_auc_facts(model, hidden, labels, train_labels) -> dict:
    """Score ``hidden`` (normalised) in blocks and report the test AUC as every train3 row does."""
    import torch

    from vlarisk.data.label_cutoffs import positive_label_cutoffs
    from vlarisk.score.metrics import test_metrics

    model.eval()
    with torch.no_grad():
        prediction = torch.cat([model(hidden[i : i + 4096]) for i in range(0, len(hidden), 4096)]).numpy()
    report = test_metrics(prediction, labels, positive_label_cutoffs(train_labels, 0.5))
    return _collapse_facts(prediction, report)


def _reference_epoch(model, optimizer, loader) -> None:
    """One epoch of the reference's step: soft-label BCE (the project's default loss), Adam, norm clipped at 1."""
    import torch
    import torch.nn.functional as F

    model.train()
    for batch_hidden, target in loader:
        loss = F.binary_cross_entropy_with_logits(model.logits(batch_hidden), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


def _reference_record(args, rows, epoch_seconds, dataset_path, model, test, test_labels, train_labels) -> dict:
    """The record of a reference training row: its epochs, data size and test AUC."""
    return {
        "samples": args.epochs * len(rows["train"]),
        "epochs": args.epochs,
        "epoch_seconds": epoch_seconds,
        "workers": loader_workers(),
        "dataset_bytes": _tree_bytes(dataset_path),
        **_test_auc_facts(model, test, test_labels, train_labels),
    }


def train3_reference(args) -> dict:
    """The reference code's training as its user runs it (REFERENCE.md), on the same rows and in the
    same precision as the project: the guide's ``*_dataset.pkl`` loaded whole and copied into arrays,
    normalised with the training rows' statistics, a per-sample ``Dataset`` under a DataLoader
    (workers <= cores), soft-label BCE, Adam, gradient norm clipped at 1, validation loss and AUC
    after every epoch with the best weights saved, 3 epochs; then the test rows scored."""
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score
    from torch.utils.data import DataLoader, Dataset

    from vlarisk.data.splits import split_rows

    torch.set_num_threads(args.threads)
    p = paths(args.workdir)
    with open(p["reference_dataset"], "rb") as handle:
        samples = pickle.load(handle)["dataset"]
    hidden = np.array([s["hidden_state"] for s in samples], dtype=np.float32)
    labels = np.array([s["risk_label"] for s in samples], dtype=np.float32)
    # the reference file keeps no rollout ids: its rows are the per-step dataset's, in the same order
    if not np.array_equal(labels, np.load(p["dataset_perstep"] / "risk_label.npy")):
        raise SystemExit("reference_dataset.pkl and the per-step dataset disagree: rerun the prepare stage")
    rows = split_rows(np.load(p["dataset_perstep"] / "rollout_id.npy"), json.loads(p["split"].read_text()))
    mean = hidden[rows["train"]].mean(axis=0)
    std = np.maximum(hidden[rows["train"]].std(axis=0), 1e-6)
    hidden -= mean
    hidden /= std

    class Samples(Dataset):
        def __init__(self, indices):
            self.indices = indices

        def __len__(self):
            return len(self.indices)

        def __getitem__(self, i):
            row = self.indices[i]
            return torch.from_numpy(hidden[row]), torch.from_numpy(labels[row])

    model, optimizer = _model_and_optimizer(hidden.shape[1])
    torch.manual_seed(1)
    loader = DataLoader(Samples(rows["train"]), batch_size=args.batch_size, shuffle=True, num_workers=loader_workers())
    val_loader = DataLoader(Samples(rows["val"]), batch_size=args.batch_size, num_workers=loader_workers())
    val_positive = labels[rows["val"]] >= 0.5
    epoch_seconds, best = [], np.inf
    for _ in range(args.epochs):
        tick = time.perf_counter()
        _reference_epoch(model, optimizer, loader)
        model.eval()
        with torch.no_grad():
            val_logits = torch.cat([model.logits(h) for h, _ in val_loader])
        val_loss = float(F.binary_cross_entropy_with_logits(val_logits, torch.from_numpy(labels[rows["val"]])))
        val_auc = [
            roc_auc_score(val_positive[:, d], val_logits[:, d]) for d in range(7) if 0 < val_positive[:, d].sum() < len(val_positive)
        ]
        if val_loss < best:
            best = val_loss
            torch.save({"model_state_dict": model.state_dict(), "val_auc": val_auc}, args.workdir / "reference_best_model.pt")
        epoch_seconds.append(time.perf_counter() - tick)
    test = torch.from_numpy(hidden[rows["test"]])
    return _reference_record(args, rows, epoch_seconds, p["reference_dataset"], model, test, labels[rows["test"]], labels[rows["train"]])


def train3_reference_tuned(args) -> dict:
    """The reference recipe as a user tunes it: only the training rows of the per-step dataset read
    into one tensor, per-step normalisation, a TensorDataset under a DataLoader (workers <= cores),
    soft-label BCE, Adam, 3 epochs, fp32, no per-epoch validation; then the test rows scored."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from vlarisk.data.splits import split_rows

    torch.set_num_threads(args.threads)
    p = paths(args.workdir)
    split = json.loads(p["split"].read_text())
    hidden_all = np.load(p["dataset_perstep"] / "states.npy", mmap_mode="r")  # one row per step
    labels_all = np.load(p["dataset_perstep"] / "risk_label.npy")
    rows = split_rows(np.load(p["dataset_perstep"] / "rollout_id.npy"), split)
    hidden = torch.from_numpy(np.ascontiguousarray(hidden_all[rows["train"]]))
    mean, std = hidden.mean(dim=0), hidden.std(dim=0, unbiased=False).clamp_min(1e-6)
    hidden.sub_(mean).div_(std)
    labels = torch.from_numpy(labels_all[rows["train"]])
    model, optimizer = _model_and_optimizer(hidden.shape[1])
    torch.manual_seed(1)
    loader = DataLoader(TensorDataset(hidden, labels), batch_size=args.batch_size, shuffle=True, num_workers=loader_workers())
    epoch_seconds = []
    for _ in range(args.epochs):
        tick = time.perf_counter()
        _reference_epoch(model, optimizer, loader)
        epoch_seconds.append(time.perf_counter() - tick)
    del loader, hidden
    test = (torch.from_numpy(np.ascontiguousarray(hidden_all[rows["test"]])) - mean) / std
    return _reference_record(
        args, rows, epoch_seconds, p["dataset_perstep"], model, test, labels_all[rows["test"]], labels_all[rows["train"]]
    )


def train3_project(args, name: str = "dataset") -> dict:
    """``Trainer.fit()`` for 3 epochs (soft-label BCE, the same step as the reference; statistics, validation
    and checkpoints included), then the test rows scored and the test AUC, as the reference does."""
    import torch

    from vlarisk.core.settings import TrainingConfig
    from vlarisk.model.inference import predict_rows
    from vlarisk.score.metrics import test_metrics
    from vlarisk.train.sources import Source
    from vlarisk.train.training import Trainer

    dataset, split, rows = _train_setup(args, name)
    config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, loss_type="bce", device="cpu", seed=0)
    source = Source("bench", dataset, split)
    trainer = Trainer([source], config, args.workdir / f"train3_{name}", "bench", log=lambda _: None)
    outcome = trainer.fit()
    model = outcome.model
    prediction = predict_rows(model.predictor, dataset.hidden, rows["test"], model.mean, model.std, torch.device("cpu"))
    report = test_metrics(prediction, np.asarray(dataset.labels[rows["test"]]), outcome.label_cutoffs[source.name])
    return {
        "samples": args.epochs * len(rows["train"]),
        "epochs": args.epochs,
        "epoch_seconds": outcome.history["epoch_seconds"],
        "distinct_states": int(len(dataset.states)),
        "dataset_bytes": _tree_bytes(paths(args.workdir)[name]),
        **_collapse_facts(prediction, report),
    }


def train3_project_perstep(args) -> dict:
    return train3_project(args, "dataset_perstep")


# ---------------------------------------------------------------------------------------------
# evaluate


def _evaluation_model(args, dataset):
    """The fit stage's best model when it exists (else a seeded fresh one with training statistics)."""
    import torch

    from vlarisk.data.documents import read_checkpoint
    from vlarisk.model.checkpoints import predictor_from_checkpoint
    from vlarisk.train.normalization import feature_statistics

    checkpoint_path = paths(args.workdir)["model_dir"] / "best_model.pt"
    if checkpoint_path.exists():
        wrapped = predictor_from_checkpoint(read_checkpoint(checkpoint_path), str(checkpoint_path))
        return wrapped.predictor, wrapped.mean, wrapped.std
    model, _ = _model_and_optimizer(dataset.hidden_dim)
    split = json.loads(paths(args.workdir)["split"].read_text())
    from vlarisk.data.splits import split_rows

    mean, std = feature_statistics(dataset.hidden, split_rows(dataset.rollout_id, split)["train"])
    return model, torch.from_numpy(mean), torch.from_numpy(std)


def evaluate_naive(args) -> dict:
    import torch

    from vlarisk.data.label_cutoffs import positive_label_cutoffs
    from vlarisk.score.metrics import test_metrics

    dataset, split, rows = _train_setup(args)
    model, mean, std = _evaluation_model(args, dataset)
    start = _start()
    hidden = torch.from_numpy(np.array(dataset.hidden[rows["test"]], dtype=np.float32))
    labels = np.asarray(dataset.labels[rows["test"]], dtype=np.float32)
    label_cutoffs = positive_label_cutoffs(np.asarray(dataset.labels[rows["train"]]), 0.5)
    model.eval()
    outputs = []
    with torch.no_grad():
        for first in range(0, len(hidden), 256):
            outputs.append(model((hidden[first : first + 256] - mean) / std))
    report = test_metrics(torch.cat(outputs).numpy(), labels, label_cutoffs)
    return {"samples": len(labels), **_since(start), "mean_auc": report["test_metrics"]["mean_auc"]}


def evaluate_project(args) -> dict:
    import torch

    from vlarisk.model.models import NormalizedRiskPredictor
    from vlarisk.score.evaluation import evaluate
    from vlarisk.train.sources import Source

    dataset, split, rows = _train_setup(args)
    model, mean, std = _evaluation_model(args, dataset)
    source = Source("bench", dataset, split)
    start = _start()
    report = evaluate(NormalizedRiskPredictor(model, mean, std), source, source.label_cutoffs(0.5), torch.device("cpu"))
    return {"samples": report["num_samples"], **_since(start), "mean_auc": report["test_metrics"]["mean_auc"]}


# what each preparation writes (removed before it runs); the others are inputs of later stages
PREPARE_OUTPUTS = {
    "reference": ("reference_dataset",),
    "naive": ("naive_hidden", "naive_labels"),
    "project": ("dataset",),
    "project-nosync": ("dataset",),
    "project-perstep": ("dataset_perstep",),
}

STAGES = {
    ("generate", "rollouts"): generate,
    ("prepare", "reference"): prepare_reference,
    ("prepare", "naive"): prepare_naive,
    ("prepare", "load-only"): prepare_load_only,
    ("prepare", "project"): prepare_project,
    ("prepare", "project-nosync"): prepare_project_nosync,
    ("prepare", "project-perstep"): prepare_project_perstep,
    ("train3", "reference"): train3_reference,
    ("train3", "reference-tuned"): train3_reference_tuned,
    ("train3", "project"): train3_project,
    ("train3", "project-perstep"): train3_project_perstep,
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
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the train3 rows")
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
        for name in PREPARE_OUTPUTS.get(impl, ()):
            target = paths(args.workdir)[name]
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
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
