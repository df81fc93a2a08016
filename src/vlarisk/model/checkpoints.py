"""Checkpoint files: writing them during training, reading them safely, rebuilding their models.

The layout itself, the file names and the one reader and writer are :mod:`vlarisk.data.documents`'.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import vlarisk
from vlarisk.core.errors import InputError
from vlarisk.data.documents import (
    LABEL_CUTOFFS,
    SOURCES,
    Checkpoint,
    is_multi_source,
    read_checkpoint,
    source_entry,
    stored_label_cutoffs,
)
from vlarisk.data.label_cutoffs import label_cutoffs_by_dimension, label_cutoffs_from_dimensions
from vlarisk.model.deploy import deployed
from vlarisk.model.models import MultiRiskPredictor, NormalizedMultiRiskPredictor, NormalizedRiskPredictor, RiskPredictor

# The training guide's checkpoints carry no output_activation: their head was a ReLU.
GUIDE_OUTPUT_ACTIVATION = "relu"


@contextlib.contextmanager
def _rebuild_errors(path: str):
    """Turn a missing field or weights that do not fit the architecture into an :class:`InputError`."""
    try:
        yield
    except KeyError as exc:
        raise InputError(f"{path}: checkpoint lacks field {exc}") from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: weights do not fit the saved model_config ({' '.join(str(exc).split())[:300]})") from None


def predictor_from_checkpoint(checkpoint: dict, path: str = "checkpoint") -> NormalizedRiskPredictor:
    """Rebuild the single-source predictor of ``checkpoint`` with its normalisation (eval mode)."""
    with _rebuild_errors(path):
        model = RiskPredictor(**{"output_activation": GUIDE_OUTPUT_ACTIVATION, **checkpoint["model_config"]})
        model.load_state_dict(checkpoint["model_state_dict"])
        stats = checkpoint["normalization"]
    input_dim = model.config["input_dim"]
    mean = torch.as_tensor(stats["mean"], dtype=torch.float32) if stats else torch.zeros(input_dim)
    std = torch.as_tensor(stats["std"], dtype=torch.float32) if stats else torch.ones(input_dim)
    return NormalizedRiskPredictor(model, mean, std).eval()


def multi_predictor_from_checkpoint(checkpoint: dict, path: str = "checkpoint") -> NormalizedMultiRiskPredictor:
    """Rebuild a multi-source checkpoint's model with every source's normalisation (eval mode)."""
    with _rebuild_errors(path):
        network = MultiRiskPredictor(**checkpoint["model_config"])
        network.load_state_dict(checkpoint["model_state_dict"])
        statistics = {
            name: (torch.as_tensor(info["normalization"]["mean"]), torch.as_tensor(info["normalization"]["std"]))
            for name, info in checkpoint[SOURCES].items()
        }
        return NormalizedMultiRiskPredictor(network, statistics).eval()


def load_predictor(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a trained checkpoint as a ready-to-use model that takes raw hidden states.

    It takes numpy or torch, one state ``[D]`` or a batch ``[B, D]``, and returns risk ``[7]`` or
    ``[B, 7]`` of the same kind without gradients (:class:`vlarisk.model.deploy.DeployedPredictor`);
    a multi-model checkpoint's model is called as ``model(hidden, source)``.

    >>> model = load_predictor("results/models/synthetic_a/best_model.pt")  # doctest: +SKIP
    >>> risk = model(np.zeros(64, np.float32))  # [7] numpy, normalisation applied inside
    """
    checkpoint = read_checkpoint(path)
    rebuild = multi_predictor_from_checkpoint if is_multi_source(checkpoint) else predictor_from_checkpoint
    return deployed(rebuild(checkpoint, str(path)), str(path)).to(device)


def data_fields(parts: list, normalize: bool, multi_source: bool) -> dict:
    """Checkpoint fields tying the weights to their data: normalisation, label cut-offs, split, data hash.

    ``parts`` are :class:`~vlarisk.train.sources.TrainingSource`; a single-source checkpoint has one,
    at the top level, a multi-source one has them per source under ``sources``.
    """
    if not multi_source:
        (part,) = parts
        return {**_source_facts(part, normalize), "split": part.source.split, "data_sha256": part.source.dataset.content_hash}
    sources = {
        p.source.name: {"input_dim": p.source.dataset.hidden_dim, "dataset": p.source.dataset.path, **_source_facts(p, normalize)}
        for p in parts
    }
    return {
        SOURCES: sources,
        "split": {p.source.name: p.source.split for p in parts},
        "data_sha256": {p.source.name: p.source.dataset.content_hash for p in parts},
    }


def _source_facts(part, normalize: bool) -> dict:
    """One source's normalisation statistics and positive-label cut-offs, as saved."""
    normalization = {"mean": part.mean.tolist(), "std": part.std.tolist(), "enabled": normalize}
    return {"normalization": normalization, LABEL_CUTOFFS: label_cutoffs_by_dimension(part.label_cutoffs)}


def checkpoint_document(
    model: nn.Module, state: dict, optimizer: torch.optim.Optimizer, epoch: int, metrics: dict, fields: dict
) -> Checkpoint:
    """A checkpoint of weights ``state`` of ``model``'s architecture, with the optimiser, the epoch's
    validation ``metrics`` and ``fields`` (:func:`data_fields`, ``training_config``, ``model_name``,
    ``history``, ``best``). It refers to the live optimiser state and ``fields``: save or copy it at once."""
    return {
        "epoch": epoch,
        "model_state_dict": state,
        "optimizer_state_dict": optimizer.state_dict(),
        "val_loss": metrics["loss"],
        "val_metrics": metrics,
        "model_config": model.model_config,
        **fields,
        "versions": {"vlarisk": vlarisk.__version__, "torch": str(torch.__version__)},
    }


@dataclass
class SavedLabelCutoffs:
    """A source's positive-label cut-offs as saved at training, with the data, split and fraction they came from."""

    label_cutoffs: np.ndarray
    data_sha256: str | None
    split: dict | None
    fraction_of_max: float | None


def saved_label_cutoffs(checkpoint: dict, source: str) -> SavedLabelCutoffs | None:
    """``source``'s saved label cut-offs (any name for a single-source checkpoint); ``None`` when the
    checkpoint saves none (the guide's and those written before label cut-offs were saved)."""
    multi, cutoffs = is_multi_source(checkpoint), stored_label_cutoffs(source_entry(checkpoint, source))
    if cutoffs is None:
        return None
    data_sha256, split = checkpoint.get("data_sha256"), checkpoint.get("split")
    if multi:
        data_sha256, split = (data_sha256 or {}).get(source), (split or {}).get(source)
    fraction = (checkpoint.get("training_config") or {}).get("positive_fraction_of_max")
    return SavedLabelCutoffs(label_cutoffs_from_dimensions(cutoffs), data_sha256, split, fraction)
