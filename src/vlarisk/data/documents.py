"""The files a trained model leaves: their names, the layouts of checkpoints and ``results.json``,
and the one reader and writer of each.

A checkpoint holds the training guide's keys (``epoch``, ``model_state_dict``,
``optimizer_state_dict``, ``val_loss``, ``val_metrics``, ``model_config``, ``normalization``)
and what ties the weights to their data and settings (:class:`Checkpoint`); a multi-source one
keeps its per-source facts under ``sources[<name>]`` (:class:`SourceEntry`). ``results.json``
holds the guide's keys (``model_name``, ``test_metrics``, ``history``, ``config``) and the rest of
the evaluation (:class:`Results`). Both carry a ``format_version``; files without one (the guide's,
and those written before versions) still read, as do keys stored under their earlier names.

What reads and writes the files (torch, numpy, the package's IO helpers) is imported when a file
is read or written, so that the names and layouts cost the plan and a command's ``--help`` nothing.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import torch

BEST_MODEL = "best_model.pt"  # the weights of the best validation epoch, with the alarm
LATEST_CHECKPOINT = "latest.pt"  # the last finished epoch's state, resumed from
CHECKPOINT_NAMES = (BEST_MODEL, LATEST_CHECKPOINT)
RESULTS_FILE = "results.json"
BASELINE_SCORES_SUFFIX = ".npz"  # a baselines file's scores, beside its .json (vlarisk.score.source_baselines)

CHECKPOINT_FORMAT = 2  # 2: positive-label cut-offs stored as ``label_cutoffs`` (1: ``thresholds``)
RESULTS_FORMAT = 1

# keys read outside the module that writes them
SOURCES = "sources"
ALARM = "alarm"
LABEL_CUTOFFS = "label_cutoffs"
EARLIER_LABEL_CUTOFFS = "thresholds"  # the name of LABEL_CUTOFFS in checkpoints of format 1 and before, and in older predictions files
TEST_METRICS = "test_metrics"
PER_SOURCE = "per_source"
DETECTION = "detection"
BASELINES = "baselines"
SUMMARY = "summary"


class Alarm(TypedDict, total=False):
    """The calibrated alarm of a source (:func:`vlarisk.score.alarm.fit_alarm`): ``threshold`` on the
    running maximum risk, the level ``alpha``, what it was fitted on, and the optional ``band``."""

    threshold: float | None
    threshold_at_horizon: float | None
    alpha: float
    score: str
    calibration_set: str
    n_calibration: int
    conformal_valid: bool
    conformal_reason: str | None
    warning: str | None
    reason: str | None
    band: dict | None


class SourceEntry(TypedDict, total=False):
    """One source of a multi-source checkpoint."""

    input_dim: int
    dataset: str
    normalization: dict
    label_cutoffs: dict[str, float | None]
    alarm: Alarm


class Checkpoint(TypedDict, total=False):
    """``best_model.pt`` and ``latest.pt``. A single-source checkpoint has ``normalization``,
    ``label_cutoffs`` and ``alarm`` at the top level; a multi-source one has them in ``sources``,
    and its ``split`` and ``data_sha256`` are ``{source: ...}``."""

    format_version: int
    epoch: int
    model_state_dict: dict
    optimizer_state_dict: dict
    val_loss: float
    val_metrics: dict
    model_config: dict
    normalization: dict
    label_cutoffs: dict[str, float | None]
    split: Any
    data_sha256: Any
    sources: dict[str, SourceEntry]
    training_config: dict
    model_name: str
    history: dict
    best: dict
    versions: dict[str, str]
    alarm: Alarm


class DetectionBlock(TypedDict, total=False):
    """One test set's rollout-level detection in ``results.json`` (``detection[<test set>]``), made by
    :func:`vlarisk.score.detection.detection_report`; its ``rollout_auc``/``rollout_ap`` (and each
    ``per_dimension`` entry's) are :func:`vlarisk.score.detection.rollout_ranking` of the earliest-stop
    scores. The tables read only the keys below."""

    rollout_auc: float | None
    rollout_ap: float | None
    ci95: dict
    deployed: dict
    per_dimension: dict[str, dict]
    attribution: dict
    splits: dict  # with several task splits: mean and SD over them (vlarisk.data.task_splits)
    conformal_valid: bool
    baselines: dict[str, dict]  # each scorer's headline numbers, scored the same way


class Results(TypedDict, total=False):
    """``results.json`` of one model (:func:`vlarisk.score.evaluation.write_results`). A multi-source
    model's pooled metrics sit at the top level and each source's report under ``per_source``."""

    format_version: int
    model_name: str
    test_metrics: dict  # vlarisk.score.metrics.test_metrics: auc_<d>/ap_<d> from ranking_metrics, their means
    positives: dict
    num_samples: int
    label_cutoffs: dict[str, float | None]
    undefined: dict
    mean_over: list[str]
    prediction_std: dict
    collapsed: bool
    collapse: list[str]
    step_targets: dict
    baselines: dict
    detection: dict[str, DetectionBlock]  # per test set: test_seen/test_unseen, or test
    attribution: dict
    per_source: dict[str, dict]
    pooling: str
    provenance: dict
    best_epoch: int
    history: dict
    config: dict
    dimensions: list[str]
    summary: dict


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data only, no code runs.

    numpy scalars, dtypes and arrays are allowed too (the guide's checkpoints hold numpy floats
    in ``val_metrics``); they rebuild data only, exactly as in :mod:`vlarisk.data.safe_pickle`.
    """
    import torch

    from vlarisk.core.errors import InputError, UnsafePickleError
    from vlarisk.data.safe_pickle import numpy_safe_globals

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


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (complete or absent; a full disk is an
    :class:`~vlarisk.core.errors.OutputError` naming ``path``), stamped with :data:`CHECKPOINT_FORMAT`
    unless it carries its own version (a checkpoint read and written back keeps its layout)."""
    import torch

    from vlarisk.core.io_utils import atomic_path

    if "format_version" not in checkpoint:
        checkpoint = {"format_version": CHECKPOINT_FORMAT, **checkpoint}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def is_multi_source(checkpoint: Checkpoint) -> bool:
    """Whether ``checkpoint`` holds a multi-source model (its per-source facts under ``sources``)."""
    return SOURCES in checkpoint


def source_entry(checkpoint: Checkpoint, source: str | None) -> SourceEntry | Checkpoint:
    """Where ``source``'s normalisation, label cut-offs and alarm are stored: its ``sources`` entry
    in a multi-source checkpoint (empty when it has none), the checkpoint itself otherwise."""
    return checkpoint[SOURCES].get(source, {}) if is_multi_source(checkpoint) else checkpoint


def stored_label_cutoffs(entry: SourceEntry | Checkpoint) -> dict | None:
    """The positive-label cut-offs stored in a checkpoint entry, under either name; ``None`` when
    it stores none (the guide's checkpoints, and those from before cut-offs were stored)."""
    return entry.get(LABEL_CUTOFFS, entry.get(EARLIER_LABEL_CUTOFFS))


def with_alarms(checkpoint: Checkpoint, alarms: dict[str, Alarm]) -> Checkpoint:
    """``checkpoint`` with each source's calibrated alarm in its place: ``alarm`` of a single-source
    one, ``sources[<name>]["alarm"]`` of a multi-source one (the checkpoint itself is not changed)."""
    if not is_multi_source(checkpoint):
        (alarm,) = alarms.values()
        return {**checkpoint, ALARM: alarm}
    sources = {name: {**entry, **({ALARM: alarms[name]} if name in alarms else {})} for name, entry in checkpoint[SOURCES].items()}
    return {**checkpoint, SOURCES: sources}


def write_results_file(path: str | os.PathLike, results: Results) -> None:
    """Write ``results.json`` atomically, stamped with :data:`RESULTS_FORMAT`."""
    from vlarisk.core.io_utils import write_json

    write_json(path, {"format_version": RESULTS_FORMAT, **results})


def read_results(path: str | os.PathLike) -> Results:
    """A ``results.json`` document (any format version); a missing or malformed file is an :class:`InputError`."""
    from vlarisk.core.cli import read_json

    return read_json(path)
