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
from vlarisk.constants import ACTION_DIMENSIONS
from vlarisk.dataset import RiskDataset
from vlarisk.device import autocast, resolve_device
from vlarisk.errors import InputError
from vlarisk.inference import predict_rows
from vlarisk.io_utils import atomic_path
from vlarisk.model import RiskPredictor, read_checkpoint
from vlarisk.normalization import feature_statistics, identity_statistics
from vlarisk.splits import split_rows
from vlarisk.thresholds import binarize, positive_thresholds

LOSS_TYPES = ("mse", "mae", "huber", "bce")
HUBER_DELTA = 0.1  # risks live in [0, 1]: with the usual delta of 1 Huber would equal MSE / 2
CHECKPOINT_FORMAT = 1


@dataclass
class TrainingConfig:
    """Hyperparameters of one training run; every field is saved in the checkpoint.

    Parameters
    ----------
    epochs, batch_size, lr, weight_decay : training schedule (Adam, gradient norm clipped at ``grad_clip``).
    hidden_dims, dropout, activation : the :class:`~vlarisk.model.RiskPredictor` architecture.
    loss_type : ``mse``, ``mae``, ``huber`` (delta 0.1) or ``bce`` (soft-label cross-entropy on logits).
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
    loss_type: str = "mse"
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

    On a GPU with room for it, the normalised training rows are copied to the device once;
    otherwise each batch is gathered from the (memory-mapped) dataset and normalised on the fly,
    so no normalised copy of the data is ever made in host memory.
    """

    def __init__(self, dataset: RiskDataset, rows: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device, batch_size: int):
        self.dataset, self.rows, self.device, self.batch_size = dataset, rows, device, batch_size
        self.mean, self.std = mean.to(device), std.to(device)
        self.labels = torch.from_numpy(np.asarray(dataset.labels[rows], dtype=np.float32)).to(device)
        self.resident = self._copy_to_device() if device.type == "cuda" else None

    def _copy_to_device(self) -> torch.Tensor | None:
        needed = len(self.rows) * self.dataset.hidden_dim * 4
        free, _ = torch.cuda.mem_get_info(self.device)
        if needed > 0.6 * free:
            return None
        resident = torch.empty((len(self.rows), self.dataset.hidden_dim), dtype=torch.float32, device=self.device)
        for start in range(0, len(self.rows), 65536):
            block = torch.from_numpy(np.asarray(self.dataset.hidden[self.rows[start : start + 65536]], dtype=np.float32))
            resident[start : start + len(block)] = (block.to(self.device) - self.mean) / self.std
        return resident

    def __len__(self) -> int:
        return len(self.rows)

    def epoch(self, seed: int, epoch: int):
        """Yield ``(hidden, target)`` batches in the order fixed by ``(seed, epoch)``."""
        order = np.random.default_rng([seed, epoch]).permutation(len(self.rows))
        for start in range(0, len(order), self.batch_size):
            positions = np.sort(order[start : start + self.batch_size])
            if self.resident is not None:
                index = torch.from_numpy(positions).to(self.device)
                yield self.resident[index], self.labels[index]
                continue
            block = torch.from_numpy(np.asarray(self.dataset.hidden[self.rows[positions]], dtype=np.float32))
            block = block.to(self.device, non_blocking=True)
            yield (block - self.mean) / self.std, self.labels[torch.from_numpy(positions).to(self.device)]


def validation_metrics(prediction: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, loss_type: str) -> dict:
    """Validation loss, per-dimension AUC and their mean (over dimensions with both classes)."""
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
    return metrics


def selection_score(metrics: dict) -> float:
    """Higher is better: mean validation AUC, or minus the loss where no AUC is defined."""
    return metrics["mean_auc"] if metrics["mean_auc"] is not None else -metrics["loss"]


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
        self.model = RiskPredictor(dataset.hidden_dim, config.hidden_dims, dropout=config.dropout, activation=config.activation).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.history = {"train_loss": [], "val_loss": [], "val_metrics": [], "epoch_seconds": [], "samples_per_second": []}
        self.best = {"epoch": 0, "score": -np.inf}
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.start_epoch = 1

    def resume(self) -> None:
        """Continue from ``latest.pt`` in the output directory, history included."""
        path = self.output_dir / "latest.pt"
        if not path.exists():
            self.log(f"--resume: {path} not found, starting from epoch 1")
            return
        checkpoint = read_checkpoint(path, map_location=self.device)
        if checkpoint.get("data_sha256") != self.dataset.content_hash or checkpoint.get("model_config") != self.model.model_config:
            raise InputError(f"{path}: cannot resume: it was trained on other data or another architecture")
        if checkpoint.get("split") != self.split:
            raise InputError(f"{path}: cannot resume: it was trained with a different split")
        self.model.load_state_dict(checkpoint["model_state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        self.history, self.best = checkpoint["history"], checkpoint["best"]
        best_path = self.output_dir / "best_model.pt"
        self.best_state = read_checkpoint(best_path, self.device)["model_state_dict"] if best_path.exists() else copy.deepcopy(self.model.state_dict())
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.log(f"resumed from {path} at epoch {self.start_epoch}")

    def fit(self) -> TrainingOutcome:
        started = time.perf_counter()
        stream = BatchStream(self.dataset, self.rows["train"], self.mean, self.std, self.device, self.config.batch_size)
        self.log(f"training {self.model_name}: {len(self.rows['train'])} train / {len(self.rows['val'])} val steps, "
                 f"input {self.dataset.hidden_dim}-D, device {self.device}{' (bf16)' if self.config.bf16 else ''}")
        for epoch in range(self.start_epoch, self.config.epochs + 1):
            self._run_epoch(stream, epoch)
        self.model.load_state_dict(self.best_state)
        return TrainingOutcome(self.model, self.mean, self.std, self.history, self.best["epoch"], self.device, time.perf_counter() - started)

    def _run_epoch(self, stream: BatchStream, epoch: int) -> None:
        config = self.config
        tick = time.perf_counter()
        torch.manual_seed(config.seed * 100_003 + epoch)
        self.model.train()
        total = torch.zeros((), device=self.device)
        for hidden, target in stream.epoch(config.seed, epoch):
            with autocast(self.device, config.bf16):
                loss = training_loss(self.model, hidden, target, config.loss_type)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            total += loss.detach() * len(target)
        train_loss = float(total) / len(stream)
        prediction = predict_rows(self.model, self.dataset.hidden, self.rows["val"], self.mean, self.std, self.device, bf16=config.bf16)
        metrics = validation_metrics(prediction, self.val_labels, self.thresholds, config.loss_type)
        seconds = time.perf_counter() - tick
        self._record(epoch, train_loss, metrics, seconds, len(stream) / seconds)

    def _record(self, epoch: int, train_loss: float, metrics: dict, seconds: float, rate: float) -> None:
        history = self.history
        history["train_loss"].append(train_loss)
        history["val_loss"].append(metrics["loss"])
        history["val_metrics"].append(metrics)
        history["epoch_seconds"].append(seconds)
        history["samples_per_second"].append(rate)
        score = selection_score(metrics)
        improved = score > self.best["score"]
        if improved:
            self.best = {"epoch": epoch, "score": float(score)}
            self.best_state = copy.deepcopy(self.model.state_dict())
            self._save("best_model.pt", epoch, metrics)
        self._save("latest.pt", epoch, metrics)
        auc = "n/a" if metrics["mean_auc"] is None else f"{metrics['mean_auc']:.4f}"
        self.log(f"epoch {epoch:3d}/{self.config.epochs}  train_loss {train_loss:.5f}  val_loss {metrics['loss']:.5f}  "
                 f"val_mean_auc {auc}  pred_std_min {metrics['prediction_std_min']:.4f}  "
                 f"{rate:,.0f} samples/s  {seconds:.1f}s{'  *best*' if improved else ''}")

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
            "normalization": {"mean": self.mean.tolist(), "std": self.std.tolist(), "enabled": self.config.normalize},
            "training_config": asdict(self.config),
            "model_name": self.model_name,
            "split": self.split,
            "data_sha256": self.dataset.content_hash,
            "history": self.history,
            "best": self.best,
            "versions": {"vlarisk": vlarisk.__version__, "torch": str(torch.__version__)},
        }
        with atomic_path(self.output_dir / name) as tmp:
            torch.save(checkpoint, tmp)
