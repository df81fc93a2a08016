"""One risk predictor trained on several sources (VLA models), whose hidden sizes may differ.

Each source has its own input layer (``Linear(D_s, hidden_dims[0])`` + activation + dropout) into a
shared trunk: the rest of a :class:`~vlarisk.model.RiskPredictor`, sigmoid head included. Each
source keeps its own normalisation statistics, computed from its own training rows, and saved in
the checkpoint; the reference saved none, crashed on differing hidden sizes and reported only
pooled metrics.

Training steps each draw one source's batch; the order of sources is a seeded shuffle of all
batches of the epoch, so sources are sampled in proportion to their training size and every
training row is seen once per epoch. The best epoch has the highest mean over sources of their
mean validation AUC, so every source weighs the same whatever its size.

Evaluation reports each source's metrics exactly as scoring it alone would (same rows, same
thresholds from its own training split), and pooled metrics over all test rows: predictions and
labels are concatenated, and a row is a positive when its label reaches *its own source's*
threshold (the union of the per-source binarisations), since label scales differ between sources.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from vlarisk.cli import read_json
from vlarisk.constants import NUM_DIMENSIONS
from vlarisk.dataset import RiskDataset, load_dataset
from vlarisk.device import flush_denormals, resolve_device
from vlarisk.errors import InputError
from vlarisk.evaluation import ScoredSplit, run_provenance, score_split, split_report
from vlarisk.inference import predict_rows
from vlarisk.metrics import regression_metrics, test_metrics
from vlarisk.model import ACTIVATIONS, NormalizedRiskPredictor, RiskPredictor
from vlarisk.normalization import feature_statistics, identity_statistics
from vlarisk.splits import split_rollouts, split_rows, validate_split
from vlarisk.thresholds import binarize, positive_thresholds
from vlarisk.training import BatchStream, Trainer, TrainingConfig, label_prior, validation_metrics

ENTRY_FIELDS = {"model_name", "data_path", "description", "split_path", "planting_path"}


class MultiRiskPredictor(nn.Module):
    """Per-source input layers into one shared MLP trunk; ``forward(hidden, source)``.

    Parameters
    ----------
    sources : sequence of str
        Source names, in the order of their input layers (``inputs.<i>.*`` in the state dict).
    input_dims : sequence of int
        Hidden-state size of each source.
    hidden_dims : sequence of int
        Widths of the hidden layers; the first is the input layers' width, the rest form the trunk.
    output_dim, dropout, activation, output_activation
        As for :class:`~vlarisk.model.RiskPredictor`.
    """

    def __init__(
        self,
        sources: Sequence[str],
        input_dims: Sequence[int],
        hidden_dims: Sequence[int] = (512, 256),
        output_dim: int = NUM_DIMENSIONS,
        dropout: float = 0.1,
        activation: str = "relu",
        output_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        if len(sources) != len(input_dims) or len(set(sources)) != len(sources):
            raise ValueError(f"need one input size per distinct source, got sources={list(sources)} input_dims={list(input_dims)}")
        if not hidden_dims:
            raise ValueError("a multi-source model needs at least one hidden layer to share")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        width = int(hidden_dims[0])
        self.config = {
            "sources": [str(s) for s in sources],
            "input_dims": [int(d) for d in input_dims],
            "hidden_dims": [int(h) for h in hidden_dims],
            "output_dim": int(output_dim),
            "dropout": float(dropout),
            "activation": activation,
            "output_activation": output_activation,
        }
        self.inputs = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, width), ACTIVATIONS[activation](), nn.Dropout(dropout)) for dim in self.config["input_dims"]
        )
        self.trunk = RiskPredictor(width, hidden_dims[1:], output_dim, dropout, activation, output_activation)

    @property
    def model_config(self) -> dict:
        """Keyword arguments that rebuild this architecture (saved in checkpoints)."""
        return dict(self.config)

    def index(self, source: str) -> int:
        """Position of ``source``'s input layer."""
        try:
            return self.config["sources"].index(source)
        except ValueError:
            raise KeyError(f"unknown source {source!r}; this model knows {self.config['sources']}") from None

    def logits(self, hidden: torch.Tensor, source: str) -> torch.Tensor:
        """Pre-activation scores of ``source``'s (normalised) hidden states."""
        return self.trunk.logits(self.inputs[self.index(source)](hidden))

    def start_at_prior(self, prior: np.ndarray) -> None:
        """Start every output at the label prior (see :meth:`RiskPredictor.start_at_prior`)."""
        self.trunk.start_at_prior(prior)

    def forward(self, hidden: torch.Tensor, source: str) -> torch.Tensor:
        return self.trunk(self.inputs[self.index(source)](hidden))

    def head(self, source: str) -> "SourceHead":
        """A one-argument view for ``source``, usable wherever a :class:`RiskPredictor` is."""
        return SourceHead(self, source)


class SourceHead(nn.Module):
    """The shared model seen through one source's input layer (shares its weights)."""

    def __init__(self, network: MultiRiskPredictor, source: str) -> None:
        super().__init__()
        self.network, self.source = network, source
        network.index(source)  # fail early on an unknown source

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.network.logits(hidden, self.source)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.network(hidden, self.source)


class NormalizedMultiRiskPredictor(nn.Module):
    """A multi-source predictor on raw hidden states: each source normalised with its own statistics."""

    def __init__(self, network: MultiRiskPredictor, statistics: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.network = network
        self.per_source = nn.ModuleList(NormalizedRiskPredictor(network.head(name), *statistics[name]) for name in self.sources)

    @property
    def sources(self) -> list[str]:
        return list(self.network.config["sources"])

    def source_predictor(self, source: str) -> NormalizedRiskPredictor:
        """``source``'s predictor alone: raw ``[B, D_source]`` in, risk ``[B, 7]`` out."""
        return self.per_source[self.network.index(source)]

    def forward(self, hidden: torch.Tensor, source: str) -> torch.Tensor:
        return self.source_predictor(source)(hidden)


def multi_predictor_from_checkpoint(checkpoint: dict, path: str = "checkpoint") -> NormalizedMultiRiskPredictor:
    """Rebuild a multi-source checkpoint's model with every source's normalisation (eval mode)."""
    try:
        network = MultiRiskPredictor(**checkpoint["model_config"])
        network.load_state_dict(checkpoint["model_state_dict"])
        statistics = {
            name: (torch.as_tensor(info["normalization"]["mean"]), torch.as_tensor(info["normalization"]["std"]))
            for name, info in checkpoint["sources"].items()
        }
        return NormalizedMultiRiskPredictor(network, statistics).eval()
    except KeyError as exc:
        raise InputError(f"{path}: checkpoint lacks field {exc}") from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: weights do not fit the saved model_config ({exc})") from None


@dataclass
class Source:
    """One source of a multi-model run: its name, dataset, split, and optional planting record."""

    name: str
    dataset: RiskDataset
    split: dict
    planting_path: str | None = None


def read_data_config(path: str | os.PathLike) -> list[dict]:
    """The guide's ``{"datasets": [{"model_name", "data_path", ...}]}``, checked entry by entry.

    Optional ``split_path`` (split JSON) and ``planting_path`` (synthetic planting record) may be
    given per entry; paths are relative to the working directory.
    """
    document = read_json(str(path))
    entries = document.get("datasets") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: field 'datasets' must be a non-empty list of {{model_name, data_path}} entries")
    first_use: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"{path}: datasets[{i}]"
        _check_entry(entry, where)
        name = entry["model_name"]
        if name in first_use:
            raise InputError(f"{where}.model_name {name!r} is already used by datasets[{first_use[name]}]; names must be unique")
        first_use[name] = i
    return entries


def _check_entry(entry: object, where: str) -> None:
    """One data-config entry: known fields only, a model name, and files that exist."""
    if not isinstance(entry, dict):
        raise InputError(f"{where} must be an object with model_name and data_path")
    unknown = sorted(set(entry) - ENTRY_FIELDS)
    if unknown:
        raise InputError(f"{where} has unknown field(s) {unknown}; allowed: {sorted(ENTRY_FIELDS)}")
    if not isinstance(entry.get("model_name"), str) or not entry["model_name"]:
        raise InputError(f"{where}.model_name must be a non-empty string")
    if entry.get("data_path") is None:
        raise InputError(f"{where}.data_path is missing")
    for field in ("data_path", "split_path", "planting_path"):
        value = entry.get(field)
        if value is not None and not (isinstance(value, str) and Path(value).is_file()):
            raise InputError(f"{where}.{field}: {value!r} is not an existing file")


def load_sources(
    path: str | os.PathLike,
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    seed: int = 0,
    saved_splits: dict[str, dict] | None = None,
) -> list[Source]:
    """Open every dataset of a data config with its split.

    The split is the entry's ``split_path`` if given, else ``saved_splits[name]`` (a checkpoint's),
    else a new split by rollout from the fractions and seed.
    """
    sources = []
    for entry in read_data_config(path):
        name, dataset = entry["model_name"], load_dataset(entry["data_path"])
        rollouts = dataset.metadata["rollouts"]
        if entry.get("split_path"):
            split = read_json(entry["split_path"])
            validate_split(split, rollouts, entry["split_path"])
        elif saved_splits and name in saved_splits:
            split = saved_splits[name]
        else:
            split = split_rollouts(rollouts, val_fraction, test_fraction, seed, source=entry["data_path"])
        sources.append(Source(name, dataset, split, entry.get("planting_path")))
    return sources


@dataclass
class SourceRows:
    """What training needs of one source: its rows per split, statistics and thresholds."""

    source: Source
    rows: dict[str, np.ndarray]
    mean: torch.Tensor
    std: torch.Tensor
    thresholds: np.ndarray
    val_labels: np.ndarray

    @classmethod
    def build(cls, source: Source, config: TrainingConfig) -> "SourceRows":
        """Rows of each split, and statistics and thresholds from this source's training rows only."""
        dataset = source.dataset
        rows = split_rows(dataset.rollout_id, source.split)
        for name in ("train", "val"):
            if len(rows[name]) == 0:
                raise InputError(f"{dataset.path}: the {name} split of source {source.name!r} has no steps")
        stats = feature_statistics(dataset.hidden, rows["train"]) if config.normalize else identity_statistics(dataset.hidden_dim)
        mean, std = (torch.from_numpy(s) for s in stats)
        thresholds = positive_thresholds(dataset.labels[rows["train"]], config.positive_fraction_of_max)
        return cls(source, rows, mean, std, thresholds, np.asarray(dataset.labels[rows["val"]], dtype=np.float32))


class MixedBatchStream:
    """Every source's batches of an epoch, interleaved in a seeded random order."""

    def __init__(self, streams: list[BatchStream]) -> None:
        self.streams = streams

    def __len__(self) -> int:
        return sum(len(stream) for stream in self.streams)

    def epoch(self, seed: int, epoch: int):
        """Yield ``(source_index, hidden, target)`` in the order fixed by ``(seed, epoch)``."""
        counts = [-(-len(stream) // stream.batch_size) for stream in self.streams]
        schedule = np.random.default_rng([seed, epoch]).permutation(np.repeat(np.arange(len(counts)), counts))
        batches = [stream.epoch(seed, epoch) for stream in self.streams]
        for index in schedule:
            hidden, target = next(batches[index])
            yield int(index), hidden, target


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


@dataclass
class MultiTrainingOutcome:
    """What a finished multi-source run hands to evaluation."""

    model: NormalizedMultiRiskPredictor
    history: dict
    best_epoch: int
    device: torch.device
    wall_seconds: float


class MultiTrainer(Trainer):
    """A :class:`~vlarisk.training.Trainer` over several sources: same loop, checkpoints and resume."""

    def __init__(self, sources: list[Source], config: TrainingConfig, output_dir: str | os.PathLike, model_name: str, log: Callable[[str], None] = print):
        """Per-source rows and statistics in place of the single dataset; model and optimiser via ``_start``."""
        self.config, self.model_name, self.log = config, model_name, log
        self.output_dir = Path(output_dir)
        self.device = resolve_device(config.device)
        self.parts = [SourceRows.build(source, config) for source in sources]
        names = [source.name for source in sources]
        torch.manual_seed(config.seed)
        network = MultiRiskPredictor(names, [s.dataset.hidden_dim for s in sources], config.hidden_dims, dropout=config.dropout, activation=config.activation)
        train_labels = np.concatenate([np.asarray(p.source.dataset.labels[p.rows["train"]], dtype=np.float64) for p in self.parts])
        self._start(network, label_prior(train_labels))
        self.heads = [network.head(name) for name in names]

    def fit(self) -> MultiTrainingOutcome:
        """Run the remaining epochs; return the best epoch's model with every source's normalisation."""
        started = time.perf_counter()
        streams = [BatchStream(p.source.dataset, p.rows["train"], p.mean, p.std, self.device, self.config.batch_size) for p in self.parts]
        sizes = ", ".join(f"{p.source.name} {len(p.rows['train'])}/{len(p.rows['val'])} ({p.source.dataset.hidden_dim}-D)" for p in self.parts)
        self.log(f"training {self.model_name} on train/val steps {sizes}, device {self.device}{' (bf16)' if self.config.bf16 else ''}")
        stream = MixedBatchStream(streams)
        with flush_denormals():
            for epoch in range(self.start_epoch, self.config.epochs + 1):
                self._run_epoch(stream, epoch)
        self.model.load_state_dict(self.best_state)
        model = NormalizedMultiRiskPredictor(self.model, {p.source.name: (p.mean, p.std) for p in self.parts}).to(self.device)
        return MultiTrainingOutcome(model.eval(), self.history, self.best["epoch"], self.device, time.perf_counter() - started)

    def _training_batches(self, stream: MixedBatchStream, epoch: int):
        for index, hidden, target in stream.epoch(self.config.seed, epoch):
            yield self.heads[index], hidden, target

    def _validate(self) -> dict:
        per_source = {}
        for part, head in zip(self.parts, self.heads):
            dataset = part.source.dataset
            prediction = predict_rows(head, dataset.hidden, part.rows["val"], part.mean, part.std, self.device, bf16=self.config.bf16)
            per_source[part.source.name] = validation_metrics(prediction, part.val_labels, part.thresholds, self.config.loss_type)
        return combined_validation(per_source, {p.source.name: len(p.rows["val"]) for p in self.parts})

    def _data_fields(self) -> dict:
        sources = {
            p.source.name: {
                "input_dim": p.source.dataset.hidden_dim,
                "dataset": p.source.dataset.path,
                "normalization": {"mean": p.mean.tolist(), "std": p.std.tolist(), "enabled": self.config.normalize},
            }
            for p in self.parts
        }
        split = {p.source.name: p.source.split for p in self.parts}
        return {"sources": sources, "split": split, "data_sha256": {p.source.name: p.source.dataset.content_hash for p in self.parts}}


def pooled_report(scored: list[ScoredSplit]) -> dict:
    """Metrics over every source's rows at once; a row's positives follow its own source's thresholds.

    The per-source binarisations are concatenated and scored as 0/1 labels with threshold 1; the
    error metrics are then recomputed on the raw labels.
    """
    prediction = np.concatenate([s.prediction for s in scored])
    labels = np.concatenate([s.labels for s in scored])
    positives = np.concatenate([binarize(s.labels, s.thresholds) for s in scored]).astype(np.float32)
    any_threshold = ~np.all(np.isnan([s.thresholds for s in scored]), axis=0)
    report = test_metrics(prediction, positives, np.where(any_threshold, 1.0, np.nan))
    report["test_metrics"].update(regression_metrics(prediction, labels))
    del report["thresholds"]  # per source only: see per_source[<name>]["thresholds"]
    return report


def evaluate_sources(
    model: NormalizedMultiRiskPredictor, sources: list[Source], device: torch.device, fraction_of_max: float = 0.5, log: Callable[[str], None] = print
) -> dict:
    """Pooled test metrics, plus each source's own, identical to scoring that source alone.

    Each source's block carries its own baselines (its training rows, thresholds and test rows);
    the pooled block has none, since no single baseline is fitted across sources.
    """
    started = time.perf_counter()
    scored, per_source = [], {}
    for source in sources:
        if source.name not in model.sources:
            raise InputError(f"{source.dataset.path}: source {source.name!r} is not one the model was trained on ({model.sources})")
        predictor = model.source_predictor(source.name)
        if predictor.mean.numel() != source.dataset.hidden_dim:
            raise InputError(f"{source.dataset.path}: source {source.name!r} has {source.dataset.hidden_dim}-D hidden states, the model expects {predictor.mean.numel()}-D")
        result = score_split(predictor.predictor, predictor.mean, predictor.std, source.dataset, source.split, device, fraction_of_max)
        scored.append(result)
        per_source[source.name] = {**split_report(result, source.dataset, source.planting_path, log), "dataset": source.dataset.path, "dataset_sha256": source.dataset.content_hash}
    report = pooled_report(scored)
    report["per_source"] = per_source
    report["pooling"] = "rows of all sources concatenated; positives by each row's own source's training-split thresholds"
    report["provenance"] = run_provenance(device, started)
    return report


def per_source_summary(report: dict) -> str:
    """One line: pooled and per-source mean test AUC, each source's beside its logistic baseline's."""
    parts = [f"{name} {entry['test_metrics']['mean_auc']} (logistic {entry['baselines']['logistic']['mean_auc']})" for name, entry in report["per_source"].items()]
    return f"test mean AUC pooled {report['test_metrics']['mean_auc']}; " + ", ".join(parts)

