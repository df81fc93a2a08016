"""Checkpoint files: writing them during training, reading them safely, rebuilding their models.

A single-source checkpoint holds the training guide's keys (``epoch``, ``model_state_dict``,
``optimizer_state_dict``, ``val_loss``, ``val_metrics``, ``model_config``, ``normalization``) and
ties the weights to their data with ``split``, ``data_sha256`` and ``thresholds`` (the positive
thresholds of the training split), then ``training_config``, ``model_name``, ``history``, ``best``
and ``versions``. A multi-source checkpoint keeps its per-source facts under
``sources[<name>]`` (``input_dim``, ``dataset``, ``normalization``, ``thresholds``), and ``split``
and ``data_sha256`` become ``{source: ...}``.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import vlarisk
from vlarisk.deploy import deployed
from vlarisk.errors import InputError, UnsafePickleError
from vlarisk.io_utils import atomic_path
from vlarisk.models import MultiRiskPredictor, NormalizedMultiRiskPredictor, NormalizedRiskPredictor, RiskPredictor
from vlarisk.safe_pickle import numpy_safe_globals
from vlarisk.thresholds import thresholds_by_dimension, thresholds_from_dimensions

CHECKPOINT_FORMAT = 1
# The training guide's checkpoints carry no output_activation: their head was a ReLU.
GUIDE_OUTPUT_ACTIVATION = "relu"


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data only, no code runs.

    numpy scalars, dtypes and arrays are allowed too (the guide's checkpoints hold numpy floats
    in ``val_metrics``); they rebuild data only, exactly as in :mod:`vlarisk.safe_pickle`.
    """
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a checkpoint file")
    try:
        with numpy_safe_globals(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a plain pickle: refused below anyway
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused:
            name = refused.group(1) if "." in refused.group(1) else f"builtins.{refused.group(1)}"  # torch drops "builtins."
            raise UnsafePickleError(
                f"{path}: refusing to load global '{name}': checkpoints are read with weights_only=True (tensors and plain data only)"
            ) from None
        raise InputError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {_torch_error_detail(exc)})") from None
    if not isinstance(checkpoint, dict):
        raise InputError(f"{path}: not a checkpoint (expected a dict, got {type(checkpoint).__name__})")
    return checkpoint


def _torch_error_detail(exc: Exception) -> str:
    """The informative part of a ``torch.load`` error, on one line (torch's own spans paragraphs)."""
    text = str(exc)
    inner = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", text, re.S)
    detail = inner.group(1) if inner else text.split("This is an internal")[0]
    return " ".join(detail.split())[:300]


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
            for name, info in checkpoint["sources"].items()
        }
        return NormalizedMultiRiskPredictor(network, statistics).eval()


def load_predictor(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a trained checkpoint as a ready-to-use model that takes raw hidden states.

    It takes numpy or torch, one state ``[D]`` or a batch ``[B, D]``, and returns risk ``[7]`` or
    ``[B, 7]`` of the same kind without gradients (:class:`vlarisk.deploy.DeployedPredictor`);
    a multi-model checkpoint's model is called as ``model(hidden, source)``.

    >>> model = load_predictor("results/models/synthetic_a/best_model.pt")  # doctest: +SKIP
    >>> risk = model(np.zeros(64, np.float32))  # [7] numpy, normalisation applied inside
    """
    checkpoint = read_checkpoint(path)
    rebuild = multi_predictor_from_checkpoint if "sources" in checkpoint else predictor_from_checkpoint
    return deployed(rebuild(checkpoint, str(path)), str(path)).to(device)


def data_fields(parts: list, normalize: bool, multi_source: bool) -> dict:
    """Checkpoint fields tying the weights to their data: normalisation, thresholds, split, data hash.

    ``parts`` are :class:`~vlarisk.sources.TrainingSource`; a single-source checkpoint has one,
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
        "sources": sources,
        "split": {p.source.name: p.source.split for p in parts},
        "data_sha256": {p.source.name: p.source.dataset.content_hash for p in parts},
    }


def _source_facts(part, normalize: bool) -> dict:
    """One source's normalisation statistics and positive thresholds, as saved."""
    normalization = {"mean": part.mean.tolist(), "std": part.std.tolist(), "enabled": normalize}
    return {"normalization": normalization, "thresholds": thresholds_by_dimension(part.thresholds)}


def write_checkpoint(
    path: str | os.PathLike, model: nn.Module, state: dict, optimizer: torch.optim.Optimizer, epoch: int, metrics: dict, fields: dict
) -> None:
    """Save weights ``state`` of ``model``'s architecture, with the optimiser, the epoch's
    validation ``metrics`` and ``fields`` (:func:`data_fields`, ``training_config``, ``model_name``,
    ``history``, ``best``), atomically."""
    checkpoint = {
        "format_version": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model_state_dict": state,
        "optimizer_state_dict": optimizer.state_dict(),
        "val_loss": metrics["loss"],
        "val_metrics": metrics,
        "model_config": model.model_config,
        **fields,
        "versions": {"vlarisk": vlarisk.__version__, "torch": str(torch.__version__)},
    }
    with atomic_path(path) as tmp:  # a full disk: OutputError naming path (torch's "unexpected pos" included)
        torch.save(checkpoint, tmp)


@dataclass
class SavedThresholds:
    """A source's positive thresholds as saved at training, with the data, split and fraction they came from."""

    thresholds: np.ndarray
    data_sha256: str | None
    split: dict | None
    fraction_of_max: float | None


def saved_thresholds(checkpoint: dict, source: str) -> SavedThresholds | None:
    """``source``'s saved thresholds (any name for a single-source checkpoint); ``None`` when the
    checkpoint saves none (the guide's and those written before thresholds were saved)."""
    multi = "sources" in checkpoint
    entry = checkpoint["sources"].get(source, {}) if multi else checkpoint
    if "thresholds" not in entry:
        return None
    data_sha256, split = checkpoint.get("data_sha256"), checkpoint.get("split")
    if multi:
        data_sha256, split = (data_sha256 or {}).get(source), (split or {}).get(source)
    fraction = (checkpoint.get("training_config") or {}).get("positive_fraction_of_max")
    return SavedThresholds(thresholds_from_dimensions(entry["thresholds"]), data_sha256, split, fraction)
