"""Training one risk predictor on one source or several: data in place, best epoch by ranking quality.

One source trains a :class:`~vlarisk.model.models.RiskPredictor`; several (or ``multi_source=True``) a
:class:`~vlarisk.model.models.MultiRiskPredictor`, each training step on one source's batch. The best
epoch has the highest mean validation AUC-ROC (with several sources, the mean of each source's
mean), a later epoch replacing it only when more than ``min_delta`` higher, and is a collapsed
epoch only when every epoch is. Training stops early once ``patience`` epochs in a row have not
beaten the best epoch (the history's ``stop`` says when and why). Every
epoch's data order and dropout are seeded from ``(seed, epoch)``, so a resumed run continues exactly
as an uninterrupted one would.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.core.device import autocast, flush_denormals, resolve_device
from vlarisk.core.errors import InputError
from vlarisk.core.intervals import roc_auc
from vlarisk.core.settings import TrainingConfig
from vlarisk.data.documents import BEST_MODEL, LATEST_CHECKPOINT, Alarm, Checkpoint, read_checkpoint, save_checkpoint, with_alarms
from vlarisk.data.label_cutoffs import binarize
from vlarisk.model.checkpoints import checkpoint_document, data_fields
from vlarisk.model.collapse import collapse_reasons
from vlarisk.model.inference import predict_rows
from vlarisk.model.models import MultiRiskPredictor, NormalizedMultiRiskPredictor, NormalizedRiskPredictor, RiskPredictor
from vlarisk.train.adam import FUSED_DEVICES, FusedAdam
from vlarisk.train.batches import BatchStream, MixedBatchStream
from vlarisk.train.sources import Source, TrainingSource
from vlarisk.train.tracking import record_epoch

HUBER_DELTA = 0.1  # risks live in [0, 1]: with the usual delta of 1 Huber would equal MSE / 2
RESUMABLE_CHANGES = ("epochs", "patience", "device")  # training settings that may differ when resuming
PATIENCE_REASON = "patience"  # the history's stop reason when validation stopped improving


@dataclass
class TrainingOutcome:
    """What a finished run hands to evaluation: the best epoch's model on raw hidden states
    (:class:`~vlarisk.model.models.NormalizedRiskPredictor`, or
    :class:`~vlarisk.model.models.NormalizedMultiRiskPredictor` for a multi-source run) and each
    source's positive-label cut-offs."""

    model: nn.Module
    label_cutoffs: dict[str, np.ndarray]
    history: dict
    best_epoch: int
    device: torch.device
    wall_seconds: float


def training_loss(
    model: nn.Module, hidden: torch.Tensor, target: torch.Tensor, loss_type: str, inverse: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean per-step loss of a batch; BCE works on logits, the regression losses on the predicted risk.

    With ``inverse`` (step ``i`` has the state ``hidden[inverse[i]]``) the network runs once per
    distinct state. For BCE and MSE each state is then weighted by its number of steps against the
    mean label of its steps (BCE is linear in the target; MSE adds the labels' spread around their
    state's mean, a constant); MAE and Huber take the per-step losses on the state's prediction
    broadcast to its steps. Both equal the per-step loss. With dropout, the steps of a state share
    its mask: the expected loss over masks is the per-step one (it is linear in the steps' losses),
    only the gradient's noise differs.
    """
    if inverse is not None and loss_type in ("bce", "mse"):
        return _weighted_state_loss(model, hidden, target, loss_type, inverse)
    logits = model.logits(hidden) if inverse is None else model.logits(hidden)[inverse]
    if loss_type == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), target)
    return output_loss(model.activate(logits).float(), target, loss_type)


def _weighted_state_loss(
    model: nn.Module, hidden: torch.Tensor, target: torch.Tensor, loss_type: str, inverse: torch.Tensor
) -> torch.Tensor:
    """BCE or MSE of the steps, computed once per state against its steps' mean label."""
    counts = torch.bincount(inverse, minlength=hidden.shape[0]).to(target.dtype)
    mean_target = torch.zeros((hidden.shape[0], target.shape[1]), dtype=target.dtype, device=target.device)
    mean_target.index_add_(0, inverse, target).div_(counts[:, None])
    weights = counts / target.shape[0]
    if loss_type == "bce":
        per_state = F.binary_cross_entropy_with_logits(model.logits(hidden).float(), mean_target, reduction="none").mean(dim=1)
        return (per_state * weights).sum()
    per_state = F.mse_loss(model(hidden).float(), mean_target, reduction="none").mean(dim=1)
    spread = (target - mean_target[inverse]).square().mean()
    return (per_state * weights).sum() + spread


def adam(parameters, device: torch.device, **options) -> FusedAdam | torch.optim.Adam:
    """Adam with torch's fused kernel where it has one (CPU, CUDA): one pass over each weight
    instead of about ten (on a 4096-wide input layer a third of a training step's time), and
    without the compiler stack ``torch.optim`` imports (:mod:`vlarisk.train.adam`); elsewhere torch's."""
    if device.type in FUSED_DEVICES:
        return FusedAdam(parameters, **options)
    return torch.optim.Adam(parameters, **options)


def output_loss(prediction: torch.Tensor, target: torch.Tensor, loss_type: str) -> torch.Tensor:
    """Loss from predicted risks (used for validation, where only outputs are kept)."""
    if loss_type == "mse":
        return F.mse_loss(prediction, target)
    if loss_type == "mae":
        return F.l1_loss(prediction, target)
    if loss_type == "huber":
        return F.huber_loss(prediction, target, delta=HUBER_DELTA)
    return F.binary_cross_entropy(prediction.clamp(1e-7, 1 - 1e-7), target)


def label_prior(train_labels: np.ndarray) -> np.ndarray:
    """Mean training label per dimension ``[7]``: where the outputs start (see ``start_at_prior``)."""
    return np.asarray(train_labels, dtype=np.float64).mean(axis=0) if len(train_labels) else np.zeros(len(ACTION_DIMENSIONS))


def validation_metrics(prediction: np.ndarray, labels: np.ndarray, label_cutoffs: np.ndarray, loss_type: str) -> dict:
    """Validation loss, per-dimension AUC, their mean (over dimensions with both classes) and collapse signs."""
    positives = binarize(labels, label_cutoffs)
    metrics = {"loss": float(output_loss(torch.from_numpy(prediction), torch.from_numpy(labels), loss_type))}
    aucs = []
    for dim, name in enumerate(ACTION_DIMENSIONS):
        column = positives[:, dim]
        auc = roc_auc(prediction[:, dim], column) if 0 < column.sum() < len(column) else None
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


def improves(score: tuple[bool, float], best: dict, min_delta: float) -> bool:
    """Whether an epoch's :func:`selection_score` makes it the new ``best`` (``{"score", "healthy"}``):
    a healthy epoch beats a collapsed one; otherwise its score must exceed the best's by more than
    ``min_delta``, so that a plateau's epoch-to-epoch noise does not move the kept checkpoint."""
    healthy, value = score
    if healthy != best.get("healthy", True):
        return healthy
    return value > best["score"] + min_delta


def patience_exhausted(epoch: int, best_epoch: int, patience: int) -> bool:
    """Whether ``patience`` epochs in a row up to ``epoch`` have not beaten ``best_epoch`` (never for ``patience`` 0)."""
    return bool(patience) and epoch - best_epoch >= patience


def stop_record(epoch: int, best_epoch: int, epochs: int, patience: int) -> dict | None:
    """Why training ends after ``epoch`` (``{"epoch", "reason", "detail"}``), or None to go on:
    ``patience`` epochs in a row without beating ``best_epoch`` (unless ``patience`` is 0), or the last of ``epochs``."""
    if patience_exhausted(epoch, best_epoch, patience) and epoch < epochs:
        detail = f"no better validation score for {patience} epochs since the best epoch {best_epoch} (--patience {patience})"
        return {"epoch": epoch, "reason": PATIENCE_REASON, "detail": detail}
    if epoch >= epochs:
        return {"epoch": epoch, "reason": "epochs", "detail": f"ran all {epochs} epochs (--epochs {epochs})"}
    return None


def combined_validation(per_source: dict[str, dict], sizes: dict[str, int]) -> dict:
    """Row-weighted loss, mean over sources of their mean AUC, and every source's metrics."""
    aucs = [m["mean_auc"] for m in per_source.values() if m["mean_auc"] is not None]
    loss = sum(m["loss"] * sizes[name] for name, m in per_source.items()) / sum(sizes.values())
    return {
        "loss": float(loss),
        "mean_auc": float(np.mean(aucs)) if aucs else None,
        "prediction_std_min": min(m["prediction_std_min"] for m in per_source.values()),
        "collapse": [f"{name}: {reason}" for name, m in per_source.items() for reason in m["collapse"]],
        "per_source": per_source,
    }


class Trainer:
    """Runs the epochs of one model over its sources, writing ``best_model.pt`` and ``latest.pt`` as it goes.

    ``multi_source`` (default: more than one source) picks the multi-source network and checkpoint
    layout; otherwise ``sources`` must hold exactly one source.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        config: TrainingConfig,
        output_dir: str | os.PathLike,
        model_name: str,
        log: Callable[[str], None] = print,
        multi_source: bool | None = None,
        state_dir: str | os.PathLike | None = None,
        progress: Callable[[str], None] | None = None,
    ):
        self.config, self.model_name, self.log = config, model_name, log
        self.progress = progress  # also given each epoch's short line (vlarisk-train --progress-fd)
        self.output_dir = Path(output_dir)
        # where the per-epoch checkpoints go and resume() reads them: the output directory, or a
        # directory outside a workflow's declared outputs (see vlarisk.commands.cli_args.publish_checkpoints)
        self.state_dir = Path(state_dir) if state_dir is not None else self.output_dir
        self.multi_source = len(sources) > 1 if multi_source is None else multi_source
        if not self.multi_source and len(sources) != 1:
            raise ValueError(f"a single-source model trains on one source, got {len(sources)}")
        self.device = resolve_device(config.device)
        self.parts = [TrainingSource.build(source, config.normalize, config.positive_fraction_of_max) for source in sources]
        torch.manual_seed(config.seed)
        self.model = self._network()
        self.heads = [self.model.head(part.name) for part in self.parts] if self.multi_source else [self.model]
        self.model.start_at_prior(
            label_prior(np.concatenate([np.asarray(part.source.labels("train"), dtype=np.float64) for part in self.parts]))
        )
        self.model.to(self.device)
        self.optimizer = adam(self.model.parameters(), self.device, lr=config.lr, weight_decay=config.weight_decay)
        self.history = {"train_loss": [], "val_loss": [], "val_metrics": [], "epoch_seconds": [], "samples_per_second": []}
        self.best = {"epoch": 0, "score": -np.inf, "healthy": False}
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.best_checkpoint: Checkpoint | None = None  # best_model.pt as last written, for save_best
        self.start_epoch = 1

    def _network(self) -> nn.Module:
        """A freshly initialised network for the sources (seed the torch RNG first)."""
        config, dims = self.config, [part.source.dataset.hidden_dim for part in self.parts]
        if self.multi_source:
            return MultiRiskPredictor(
                [part.name for part in self.parts], dims, config.hidden_dims, dropout=config.dropout, activation=config.activation
            )
        return RiskPredictor(dims[0], config.hidden_dims, dropout=config.dropout, activation=config.activation)

    def resume(self) -> None:
        """Continue from ``latest.pt`` in the state directory (the output directory unless
        ``state_dir`` was given), history included.

        Refuses (with the reason) a ``latest.pt`` of other data, architecture, split or training
        settings, or one already past ``epochs``: only ``epochs`` (to train further) and ``device``
        may change, so that a resumed run ends exactly where an uninterrupted one would (bit for
        bit on CPU). A refusal leaves the trainer as it was, ready to start from epoch 1.
        """
        path = self.state_dir / LATEST_CHECKPOINT
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
        changed = [
            f"{key} {saved.get(key)!r} -> {current[key]!r}"
            for key in current
            if key not in RESUMABLE_CHANGES and saved.get(key) != current[key]
        ]
        if changed:
            raise InputError(
                f"{path}: cannot resume with different training settings ({', '.join(changed)}); use the same settings or train without --resume"
            )
        if int(checkpoint["epoch"]) > self.config.epochs:
            raise InputError(
                f"{path}: cannot resume: its epoch {checkpoint['epoch']} is past epochs {self.config.epochs}; train without --resume"
            )
        # everything checked (best_model.pt too) before the trainer changes
        best_state = self._resumed_best_state(checkpoint["best"], int(checkpoint["epoch"]), fields["data_sha256"])
        self.model.load_state_dict(checkpoint["model_state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        self.history, self.best, self.best_state = checkpoint["history"], checkpoint["best"], best_state
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.log(f"resumed from {path} at epoch {self.start_epoch}")

    def _resumed_best_state(self, latest_best: dict, latest_epoch: int, data_sha256) -> dict:
        """Weights of the best epoch so far, from ``best_model.pt`` (checked to belong to this run).

        ``best_model.pt`` is written before ``latest.pt``, so a kill between the two leaves it one
        epoch ahead; that epoch is then trained again and, seeded by ``(seed, epoch)``, improves on
        the best again and overwrites it.
        """
        best_path = self.state_dir / BEST_MODEL
        if not best_path.exists():
            if latest_best["epoch"] > 0:
                raise InputError(f"{best_path}: missing, but latest.pt names epoch {latest_best['epoch']} as the best; cannot resume")
            return copy.deepcopy(self.model.state_dict())
        best = read_checkpoint(best_path, self.device)
        if best.get("data_sha256") != data_sha256 or best.get("epoch") not in (latest_best["epoch"], latest_epoch + 1):
            raise InputError(
                f"{best_path}: does not belong to latest.pt (its epoch is {best.get('epoch')}, latest.pt names {latest_best['epoch']}); cannot resume"
            )
        self.best_checkpoint = best
        return best["model_state_dict"]

    def batches(self) -> MixedBatchStream:
        """The training batches of every source, normalised on the fly."""
        return MixedBatchStream(
            [BatchStream(p.source.dataset, p.rows["train"], p.mean, p.std, self.device, self.config.batch_size) for p in self.parts]
        )

    def fit(self) -> TrainingOutcome:
        """Run the remaining epochs; return the best epoch's model with every source's normalisation."""
        started = time.perf_counter()
        stream = self.batches()
        sizes = ", ".join(f"{p.name} {len(p.rows['train'])}/{len(p.rows['val'])} ({p.source.dataset.hidden_dim}-D)" for p in self.parts)
        self.log(f"training {self.model_name} on train/val steps {sizes}, device {self.device}{' (bf16)' if self.config.bf16 else ''}")
        with flush_denormals():
            for epoch in range(self.start_epoch, self.config.epochs + 1):
                if patience_exhausted(epoch - 1, self.best["epoch"], self.config.patience):
                    break  # patience spent after the previous epoch (also a resumed run that had stopped)
                self._run_epoch(stream, epoch)
        self.model.load_state_dict(self.best_state)
        label_cutoffs = {part.name: part.label_cutoffs for part in self.parts}
        return TrainingOutcome(
            self._normalized().to(self.device).eval(),
            label_cutoffs,
            self.history,
            self.best["epoch"],
            self.device,
            time.perf_counter() - started,
        )

    def _normalized(self) -> nn.Module:
        """The network on raw hidden states, normalised with each source's training statistics."""
        if self.multi_source:
            return NormalizedMultiRiskPredictor(self.model, {part.name: (part.mean, part.std) for part in self.parts})
        return NormalizedRiskPredictor(self.model, self.parts[0].mean, self.parts[0].std)

    def _run_epoch(self, stream: MixedBatchStream, epoch: int) -> None:
        tick = time.perf_counter()
        train_loss = self._train_epoch(stream, epoch)
        metrics = self._validate()
        seconds = time.perf_counter() - tick
        self._record(epoch, train_loss, metrics, seconds, len(stream) / seconds)

    def _train_epoch(self, stream: MixedBatchStream, epoch: int, max_batches: int | None = None) -> float:
        """One pass of optimisation steps over ``stream`` (only its first ``max_batches`` when given,
        for benchmarks); returns the mean training loss per sample."""
        config = self.config
        torch.manual_seed(config.seed * 100_003 + epoch)
        self.model.train()
        total = torch.zeros((), device=self.device)
        for batch, (index, hidden, target, inverse) in enumerate(stream.epoch(config.seed, epoch)):
            if max_batches is not None and batch >= max_batches:
                break
            with autocast(self.device, config.bf16):
                loss = training_loss(self.heads[index], hidden, target, config.loss_type, inverse)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip, foreach=self.device.type in FUSED_DEVICES or None)
            self.optimizer.step()
            total += loss.detach() * len(target)
        return float(total) / len(stream)

    def _validate(self) -> dict:
        """Validation metrics of the current weights (:func:`validation_metrics`; per source and
        combined for a multi-source model)."""
        per_source = {}
        for part, head in zip(self.parts, self.heads, strict=True):
            prediction = predict_rows(
                head, part.source.dataset.hidden, part.rows["val"], part.mean, part.std, self.device, bf16=self.config.bf16
            )
            per_source[part.name] = validation_metrics(prediction, part.val_labels, part.label_cutoffs, self.config.loss_type)
        if not self.multi_source:
            return per_source[self.parts[0].name]
        return combined_validation(per_source, {part.name: len(part.rows["val"]) for part in self.parts})

    def _record(self, epoch: int, train_loss: float, metrics: dict, seconds: float, rate: float) -> None:
        history = self.history
        history["train_loss"].append(train_loss)
        history["val_loss"].append(metrics["loss"])
        history["val_metrics"].append(metrics)
        history["epoch_seconds"].append(seconds)
        history["samples_per_second"].append(rate)
        healthy, score = selection_score(metrics)
        improved = improves((healthy, score), self.best, self.config.min_delta)
        if improved:
            self.best = {"epoch": epoch, "score": score, "healthy": healthy}
            self.best_state = copy.deepcopy(self.model.state_dict())
            self._save(BEST_MODEL, epoch, metrics)
        history.pop("stop", None)
        stop = stop_record(epoch, self.best["epoch"], self.config.epochs, self.config.patience)
        if stop:
            history["stop"] = stop
        self._save(LATEST_CHECKPOINT, epoch, metrics)
        record_epoch(self.output_dir, history, self.log)  # history.csv (and TensorBoard) beside the checkpoints
        auc = "n/a" if metrics["mean_auc"] is None else f"{metrics['mean_auc']:.4f}"
        self.log(
            f"epoch {epoch:3d}/{self.config.epochs}  train_loss {train_loss:.5f}  val_loss {metrics['loss']:.5f}  "
            f"val_mean_auc {auc}  pred_std_min {metrics['prediction_std_min']:.4f}  "
            f"{rate:,.0f} samples/s  {seconds:.1f}s{'  *best*' if improved else ''}"
        )
        if self.progress is not None:
            short_auc = "n/a" if metrics["mean_auc"] is None else f"{metrics['mean_auc']:.3f}"
            self.progress(
                f"{self.model_name}: epoch {epoch}/{self.config.epochs}  train loss {train_loss:.4f}  "
                f"val loss {metrics['loss']:.4f}  val AUC {short_auc}  {seconds:.1f} s"
            )
        if metrics["collapse"]:
            self.log(
                f"WARNING: epoch {epoch} looks collapsed ({'; '.join(metrics['collapse'])}); it is only chosen as best if every epoch is"
            )
        if stop:
            self.log(f"stopping after epoch {epoch}: {stop['detail']}")

    def _save(self, name: str, epoch: int, metrics: dict) -> None:
        state = self.model.state_dict() if name == LATEST_CHECKPOINT else self.best_state
        fields = {
            **self._data_fields(),
            "training_config": asdict(self.config),
            "model_name": self.model_name,
            "history": self.history,
            "best": self.best,
        }
        checkpoint = checkpoint_document(self.model, state, self.optimizer, epoch, metrics, fields)
        save_checkpoint(self.state_dir / name, checkpoint)
        if name == BEST_MODEL:  # a snapshot: the optimiser state and history go on changing
            optimizer_state, history = copy.deepcopy((checkpoint["optimizer_state_dict"], checkpoint["history"]))
            self.best_checkpoint = {**checkpoint, "optimizer_state_dict": optimizer_state, "history": history}

    def save_best(self, alarms: dict[str, Alarm]) -> None:
        """Write ``best_model.pt`` once more, now with each source's calibrated alarm beside the best
        epoch's weights (:func:`vlarisk.data.documents.with_alarms`)."""
        if self.best_checkpoint is None:
            raise RuntimeError("save_best: no best epoch yet; call fit() first")
        save_checkpoint(self.state_dir / BEST_MODEL, with_alarms(self.best_checkpoint, alarms))

    def _data_fields(self) -> dict:
        """Checkpoint fields tying the weights to their data (see :func:`~vlarisk.model.checkpoints.data_fields`)."""
        return data_fields(self.parts, self.config.normalize, self.multi_source)
