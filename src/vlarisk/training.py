"""Training one risk predictor: data in place, normalised on the fly, best epoch by ranking quality.

The best epoch is the one with the highest mean validation AUC-ROC over the dimensions that have
positives; the reference picked the lowest validation MSE, which rewards predicting zeros on
labels that are mostly zero. Every epoch's data order and dropout are seeded from
``(seed, epoch)``, so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

import vlarisk
from vlarisk.collapse import collapse_reasons
from vlarisk.constants import ACTION_DIMENSIONS
from vlarisk.dataset import RiskDataset
from vlarisk.device import autocast, flush_denormals, resolve_device
from vlarisk.errors import InputError
from vlarisk.inference import gather_rows, predict_rows
from vlarisk.io_utils import atomic_path
from vlarisk.model import RiskPredictor, read_checkpoint
from vlarisk.normalization import feature_statistics, identity_statistics
from vlarisk.splits import split_rows
from vlarisk.thresholds import binarize, positive_thresholds

LOSS_TYPES = ("mse", "mae", "huber", "bce")
HUBER_DELTA = 0.1  # risks live in [0, 1]: with the usual delta of 1 Huber would equal MSE / 2
CHECKPOINT_FORMAT = 1
RESUMABLE_CHANGES = ("epochs", "device")  # training settings that may differ when resuming


@dataclass
class TrainingConfig:
    """Hyperparameters of one training run; every field is saved in the checkpoint.

    Parameters
    ----------
    epochs, batch_size, lr, weight_decay : training schedule (Adam, gradient norm clipped at ``grad_clip``).
    hidden_dims, dropout, activation : the :class:`~vlarisk.model.RiskPredictor` architecture.
    loss_type : ``bce`` (soft-label cross-entropy on logits, the default), ``mse``, ``mae`` or ``huber`` (delta 0.1).
    normalize : standardise inputs with training-split statistics (on by default, unlike the reference).
    seed : seeds weights, data order and dropout.
    device : ``auto``, ``cpu`` or ``cuda``; ``bf16`` turns on bfloat16 autocast.
    positive_fraction_of_max : label threshold for validation AUC (see :mod:`vlarisk.thresholds`).
    """

    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256])
    dropout: float = 0.1
    activation: str = "relu"
    loss_type: str = "bce"
    normalize: bool = True
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    grad_clip: float = 1.0
    positive_fraction_of_max: float = 0.5

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        self.hidden_dims = [int(h) for h in self.hidden_dims]


@dataclass
class TrainingOutcome:
    """What a finished run hands to evaluation."""

    model: RiskPredictor
    mean: torch.Tensor
    std: torch.Tensor
    history: dict
    best_epoch: int
    device: torch.device
    wall_seconds: float


def training_loss(model: RiskPredictor, hidden: torch.Tensor, target: torch.Tensor, loss_type: str) -> torch.Tensor:
    """Loss of a batch; BCE works on logits, the regression losses on the predicted risk."""
    if loss_type == "bce":
        return F.binary_cross_entropy_with_logits(model.logits(hidden).float(), target)
    return output_loss(model(hidden).float(), target, loss_type)


def output_loss(prediction: torch.Tensor, target: torch.Tensor, loss_type: str) -> torch.Tensor:
    """Loss from predicted risks (used for validation, where only outputs are kept)."""
    if loss_type == "mse":
        return F.mse_loss(prediction, target)
    if loss_type == "mae":
        return F.l1_loss(prediction, target)
    if loss_type == "huber":
        return F.huber_loss(prediction, target, delta=HUBER_DELTA)
    return F.binary_cross_entropy(prediction.clamp(1e-7, 1 - 1e-7), target)


class BatchStream:
    """Training batches drawn from a seeded permutation of the training rows.

    On a GPU with room for it, the normalised training rows are copied to the device once and each
    batch is an index into them (the epoch's whole index is uploaded once, so a step costs no host
    work). Otherwise each batch is gathered from the (memory-mapped) dataset straight into a reused
    buffer and normalised there in place, so no normalised copy of the data, and no per-batch
    allocation, is ever made in host memory.

    The batch tensors of the host path are reused: a yielded ``hidden`` is valid until the next
    batch is drawn from the same stream (the training loop finishes its step before that). Within
    a batch the rows are in ascending order (sequential reads); the batches of an epoch and their
    content depend only on ``(seed, epoch)``.
    """

    def __init__(self, dataset: RiskDataset, rows: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device, batch_size: int):
        self.dataset, self.rows, self.device, self.batch_size = dataset, np.asarray(rows), device, batch_size
        if len(self.rows) and (int(self.rows.min()) < 0 or int(self.rows.max()) >= len(dataset)):
            raise IndexError(f"training rows out of range for a dataset of {len(dataset)} steps")
        self.mean, self.std = mean.to(device), std.to(device)
        self.labels = torch.from_numpy(np.asarray(dataset.labels[self.rows], dtype=np.float32)).to(device)
        self.resident = self._copy_to_device() if device.type == "cuda" else None
        self._host_buffers: list[np.ndarray] = []
        self._copied: list = []  # CUDA events: when each pinned buffer's upload finished

    def _copy_to_device(self) -> torch.Tensor | None:
        needed = len(self.rows) * self.dataset.hidden_dim * 4
        free, _ = torch.cuda.mem_get_info(self.device)
        if needed > 0.6 * free:
            return None
        resident = torch.empty((len(self.rows), self.dataset.hidden_dim), dtype=torch.float32, device=self.device)
        staging = np.empty((min(8192, len(self.rows)), self.dataset.hidden_dim), dtype=np.float32)
        for start in range(0, len(self.rows), len(staging)):
            block = gather_rows(self.dataset.hidden, self.rows[start : start + len(staging)], staging)
            part = resident[start : start + len(block)]
            part.copy_(torch.from_numpy(block))
            part.sub_(self.mean).div_(self.std)
        return resident

    def __len__(self) -> int:
        return len(self.rows)

    def positions(self, seed: int, epoch: int) -> np.ndarray:
        """Positions (into ``rows``) of the epoch's batches, concatenated; each batch sorted."""
        order = np.random.default_rng([seed, epoch]).permutation(len(self.rows))
        full = len(order) - len(order) % self.batch_size
        head = np.sort(order[:full].reshape(-1, self.batch_size), axis=1).reshape(-1)
        return np.concatenate([head, np.sort(order[full:])])

    def epoch(self, seed: int, epoch: int):
        """Yield ``(hidden, target)`` batches in the order fixed by ``(seed, epoch)``."""
        positions = self.positions(seed, epoch)
        if self.resident is not None:
            index = torch.from_numpy(positions).to(self.device)
            for start in range(0, len(positions), self.batch_size):
                batch = index[start : start + self.batch_size]
                yield self.resident.index_select(0, batch), self.labels.index_select(0, batch)
            return
        host_index = torch.from_numpy(positions)
        device_index = host_index.to(self.device) if self.device.type != "cpu" else host_index
        cuda = self.device.type == "cuda"
        for number, start in enumerate(range(0, len(positions), self.batch_size)):
            batch = positions[start : start + self.batch_size]
            slot = number % 2 if cuda else 0  # two pinned buffers: gather one while the other uploads
            if cuda and self._copied[slot] is not None:
                self._copied[slot].synchronize()  # the last upload from this buffer has finished
            hidden = torch.from_numpy(gather_rows(self.dataset.hidden, self.rows[batch], self._host_buffer(slot)))
            if self.device.type != "cpu":
                hidden = hidden.to(self.device, non_blocking=cuda)
                if cuda:
                    self._copied[slot] = torch.cuda.Event()
                    self._copied[slot].record()
            hidden.sub_(self.mean).div_(self.std)
            yield hidden, self.labels.index_select(0, device_index[start : start + len(batch)])

    def _host_buffer(self, slot: int) -> np.ndarray:
        """The reused gather buffer ``slot`` (in pinned memory for CUDA), made on first use."""
        while len(self._host_buffers) <= slot:
            buffer = torch.empty((min(self.batch_size, max(len(self.rows), 1)), self.dataset.hidden_dim), dtype=torch.float32)
            self._host_buffers.append((buffer.pin_memory() if self.device.type == "cuda" else buffer).numpy())
            self._copied.append(None)
        return self._host_buffers[slot]


def label_prior(train_labels: np.ndarray) -> np.ndarray:
    """Mean training label per dimension ``[7]``: where the outputs start (see ``start_at_prior``)."""
    return np.asarray(train_labels, dtype=np.float64).mean(axis=0) if len(train_labels) else np.zeros(len(ACTION_DIMENSIONS))


def validation_metrics(prediction: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, loss_type: str) -> dict:
    """Validation loss, per-dimension AUC, their mean (over dimensions with both classes) and collapse signs."""
    positives = binarize(labels, thresholds)
    metrics = {"loss": float(output_loss(torch.from_numpy(prediction), torch.from_numpy(labels), loss_type))}
    aucs = []
    for dim, name in enumerate(ACTION_DIMENSIONS):
        column = positives[:, dim]
        auc = float(roc_auc_score(column, prediction[:, dim])) if 0 < column.sum() < len(column) else None
        metrics[f"auc_{name}"] = auc
        if auc is not None:
            aucs.append(auc)
    metrics["mean_auc"] = float(np.mean(aucs)) if aucs else None
    metrics["prediction_std_min"] = float(prediction.std(axis=0).min()) if len(prediction) else 0.0
    metrics["collapse"] = collapse_reasons(prediction, metrics["mean_auc"])
    return metrics


def selection_score(metrics: dict) -> tuple[bool, float]:
    """Higher is better: any healthy epoch beats a collapsed one; then the mean validation AUC,
    or minus the loss where no AUC is defined."""
    score = metrics["mean_auc"] if metrics["mean_auc"] is not None else -metrics["loss"]
    return not metrics.get("collapse"), float(score)


class Trainer:
    """Runs the epochs of one model, writing ``best_model.pt`` and ``latest.pt`` as it goes."""

    def __init__(self, dataset: RiskDataset, split: dict, config: TrainingConfig, output_dir: str | os.PathLike, model_name: str, log: Callable[[str], None] = print):
        self.dataset, self.split, self.config, self.model_name, self.log = dataset, split, config, model_name, log
        self.output_dir = Path(output_dir)
        self.device = resolve_device(config.device)
        self.rows = split_rows(dataset.rollout_id, split)
        for name in ("train", "val"):
            if len(self.rows[name]) == 0:
                raise InputError(f"{dataset.path}: the {name} split has no steps")
        stats = feature_statistics(dataset.hidden, self.rows["train"]) if config.normalize else identity_statistics(dataset.hidden_dim)
        self.mean, self.std = (torch.from_numpy(s) for s in stats)
        self.thresholds = positive_thresholds(dataset.labels[self.rows["train"]], config.positive_fraction_of_max)
        self.val_labels = np.asarray(dataset.labels[self.rows["val"]], dtype=np.float32)
        torch.manual_seed(config.seed)
        model = RiskPredictor(dataset.hidden_dim, config.hidden_dims, dropout=config.dropout, activation=config.activation)
        self._start(model, label_prior(dataset.labels[self.rows["train"]]))

    def _start(self, model: torch.nn.Module, prior: np.ndarray) -> None:
        """Start ``model`` at the label ``prior`` on the device, with a fresh optimiser and history
        (shared with the multi-source trainer)."""
        model.start_at_prior(prior)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.history = {"train_loss": [], "val_loss": [], "val_metrics": [], "epoch_seconds": [], "samples_per_second": []}
        self.best = {"epoch": 0, "score": -np.inf, "healthy": False}
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.start_epoch = 1

    def resume(self) -> None:
        """Continue from ``latest.pt`` in the output directory, history included.

        Refuses (with the reason) a ``latest.pt`` of other data, architecture, split or training
        settings: only ``epochs`` (to train further) and ``device`` may change, so that a resumed
        run ends exactly where an uninterrupted one would (bit for bit on CPU).
        """
        path = self.output_dir / "latest.pt"
        if not path.exists():
            self.log(f"--resume: {path} not found, starting from epoch 1")
            return
        checkpoint = read_checkpoint(path, map_location=self.device)
        fields = self._data_fields()
        if checkpoint.get("data_sha256") != fields["data_sha256"] or checkpoint.get("model_config") != self.model.model_config:
            raise InputError(f"{path}: cannot resume: it was trained on other data or another architecture")
        if checkpoint.get("split") != fields["split"]:
            raise InputError(f"{path}: cannot resume: it was trained with a different split")
        saved, current = checkpoint.get("training_config") or {}, asdict(self.config)
        changed = [f"{key} {saved.get(key)!r} -> {current[key]!r}" for key in current if key not in RESUMABLE_CHANGES and saved.get(key) != current[key]]
        if changed:
            raise InputError(f"{path}: cannot resume with different training settings ({', '.join(changed)}); use the same settings or train without --resume")
        self.model.load_state_dict(checkpoint["model_state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        self.history, self.best = checkpoint["history"], checkpoint["best"]
        self.best_state = self._resumed_best_state(int(checkpoint["epoch"]), fields["data_sha256"])
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.log(f"resumed from {path} at epoch {self.start_epoch}")

    def _resumed_best_state(self, latest_epoch: int, data_sha256) -> dict:
        """Weights of the best epoch so far, from ``best_model.pt`` (checked to belong to this run).

        ``best_model.pt`` is written before ``latest.pt``, so a kill between the two leaves it one
        epoch ahead; that epoch is then trained again and, seeded by ``(seed, epoch)``, improves on
        the best again and overwrites it.
        """
        best_path = self.output_dir / "best_model.pt"
        if not best_path.exists():
            if self.best["epoch"] > 0:
                raise InputError(f"{best_path}: missing, but latest.pt names epoch {self.best['epoch']} as the best; cannot resume")
            return copy.deepcopy(self.model.state_dict())
        best = read_checkpoint(best_path, self.device)
        if best.get("data_sha256") != data_sha256 or best.get("epoch") not in (self.best["epoch"], latest_epoch + 1):
            raise InputError(f"{best_path}: does not belong to latest.pt (its epoch is {best.get('epoch')}, latest.pt names {self.best['epoch']}); cannot resume")
        return best["model_state_dict"]

    def fit(self) -> TrainingOutcome:
        started = time.perf_counter()
        stream = BatchStream(self.dataset, self.rows["train"], self.mean, self.std, self.device, self.config.batch_size)
        self.log(f"training {self.model_name}: {len(self.rows['train'])} train / {len(self.rows['val'])} val steps, "
                 f"input {self.dataset.hidden_dim}-D, device {self.device}{' (bf16)' if self.config.bf16 else ''}")
        with flush_denormals():
            for epoch in range(self.start_epoch, self.config.epochs + 1):
                self._run_epoch(stream, epoch)
        self.model.load_state_dict(self.best_state)
        return TrainingOutcome(self.model, self.mean, self.std, self.history, self.best["epoch"], self.device, time.perf_counter() - started)

    def _run_epoch(self, stream: BatchStream, epoch: int) -> None:
        tick = time.perf_counter()
        train_loss = self._train_epoch(stream, epoch)
        metrics = self._validate()
        seconds = time.perf_counter() - tick
        self._record(epoch, train_loss, metrics, seconds, len(stream) / seconds)

    def _train_epoch(self, stream: BatchStream, epoch: int, max_batches: int | None = None) -> float:
        """One pass of optimisation steps over ``stream`` (only its first ``max_batches`` when given,
        for benchmarks); returns the mean training loss per sample."""
        config = self.config
        torch.manual_seed(config.seed * 100_003 + epoch)
        self.model.train()
        total = torch.zeros((), device=self.device)
        for batch, (model, hidden, target) in enumerate(self._training_batches(stream, epoch)):
            if max_batches is not None and batch >= max_batches:
                break
            with autocast(self.device, config.bf16):
                loss = training_loss(model, hidden, target, config.loss_type)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            total += loss.detach() * len(target)
        return float(total) / len(stream)

    def _training_batches(self, stream: BatchStream, epoch: int):
        """Yield ``(model, hidden, target)``: each batch of the epoch with the module that scores it."""
        for hidden, target in stream.epoch(self.config.seed, epoch):
            yield self.model, hidden, target

    def _validate(self) -> dict:
        """Validation metrics of the current weights (see :func:`validation_metrics`)."""
        prediction = predict_rows(self.model, self.dataset.hidden, self.rows["val"], self.mean, self.std, self.device, bf16=self.config.bf16)
        return validation_metrics(prediction, self.val_labels, self.thresholds, self.config.loss_type)

    def _record(self, epoch: int, train_loss: float, metrics: dict, seconds: float, rate: float) -> None:
        history = self.history
        history["train_loss"].append(train_loss)
        history["val_loss"].append(metrics["loss"])
        history["val_metrics"].append(metrics)
        history["epoch_seconds"].append(seconds)
        history["samples_per_second"].append(rate)
        healthy, score = selection_score(metrics)
        improved = (healthy, score) > (self.best.get("healthy", True), self.best["score"])
        if improved:
            self.best = {"epoch": epoch, "score": score, "healthy": healthy}
            self.best_state = copy.deepcopy(self.model.state_dict())
            self._save("best_model.pt", epoch, metrics)
        self._save("latest.pt", epoch, metrics)
        auc = "n/a" if metrics["mean_auc"] is None else f"{metrics['mean_auc']:.4f}"
        self.log(f"epoch {epoch:3d}/{self.config.epochs}  train_loss {train_loss:.5f}  val_loss {metrics['loss']:.5f}  "
                 f"val_mean_auc {auc}  pred_std_min {metrics['prediction_std_min']:.4f}  "
                 f"{rate:,.0f} samples/s  {seconds:.1f}s{'  *best*' if improved else ''}")
        if metrics["collapse"]:
            self.log(f"WARNING: epoch {epoch} looks collapsed ({'; '.join(metrics['collapse'])}); it is only chosen as best if every epoch is")

    def _save(self, name: str, epoch: int, metrics: dict) -> None:
        state = self.model.state_dict() if name == "latest.pt" else self.best_state
        checkpoint = {
            "format_version": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "model_state_dict": state,
            "optimizer_state_dict": self.optimizer.state_dict(),
            "val_loss": metrics["loss"],
            "val_metrics": metrics,
            "model_config": self.model.model_config,
            **self._data_fields(),
            "training_config": asdict(self.config),
            "model_name": self.model_name,
            "history": self.history,
            "best": self.best,
            "versions": {"vlarisk": vlarisk.__version__, "torch": str(torch.__version__)},
        }
        with atomic_path(self.output_dir / name) as tmp:
            torch.save(checkpoint, tmp)

    def _data_fields(self) -> dict:
        """Checkpoint fields tying the weights to their data: normalisation, split and data hash."""
        normalization = {"mean": self.mean.tolist(), "std": self.std.tolist(), "enabled": self.config.normalize}
        return {"normalization": normalization, "split": self.split, "data_sha256": self.dataset.content_hash}
