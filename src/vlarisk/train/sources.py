"""Sources: a VLA model's dataset with its split by rollout, and what training fixes from its training rows.

One source is one dataset (``--data``), several come from a data config, the guide's
``{"datasets": [{"model_name", "data_path", ...}]}`` with optional ``split_path`` and
``planting_path`` per entry. A source's positive-label cut-offs and normalisation statistics come
from its own training rows only (:class:`TrainingSource`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from vlarisk.core.cli import read_json
from vlarisk.core.errors import InputError
from vlarisk.data.dataset import RiskDataset, load_dataset
from vlarisk.data.label_cutoffs import positive_label_cutoffs
from vlarisk.data.splits import DEFAULTS, calibration_tasks_of, split_rollouts, split_rows, validate_split
from vlarisk.train.normalization import feature_statistics, identity_statistics

ENTRY_FIELDS = {"model_name", "data_path", "description", "split_path", "planting_path"}


@dataclass
class Source:
    """One source: its name, dataset, split, and optional planting record (synthetic data)."""

    name: str
    dataset: RiskDataset
    split: dict
    planting_path: str | None = None

    @cached_property
    def rows(self) -> dict[str, np.ndarray]:
        """Row indices of each subset of the split."""
        return split_rows(self.dataset.rollout_id, self.split)

    def labels(self, subset: str) -> np.ndarray:
        """Risk labels of ``subset``'s rows."""
        return np.asarray(self.dataset.labels[self.rows[subset]])

    def label_cutoffs(self, fraction_of_max: float) -> np.ndarray:
        """Positive-label cut-offs ``[7]`` from the training rows' labels (see :mod:`vlarisk.data.label_cutoffs`)."""
        return positive_label_cutoffs(self.labels("train"), fraction_of_max)

    def calibration_rows(self) -> tuple[str, np.ndarray]:
        """The rows the alarm threshold is fitted on, and their name: the ``calibration`` split, or,
        for a split without one (older split files), the validation split's successful rollouts."""
        if "calibration" in self.rows:
            held_out = calibration_tasks_of(self.split, self.dataset.metadata["rollouts"])
            return ("calibration tasks " + ", ".join(held_out) if held_out else "calibration"), self.rows["calibration"]
        val = self.rows["val"]
        return "val successes (also used for epoch selection)", val[np.asarray(self.dataset.arrays["success"][val], dtype=bool)]


def open_source(
    name: str,
    data_path: str,
    split_path: str | None = None,
    planting_path: str | None = None,
    saved_split: dict | None = None,
    val_fraction: float = DEFAULTS["val_fraction"],
    test_fraction: float = DEFAULTS["test_fraction"],
    seed: int = 0,
    calibration_tasks=DEFAULTS["calibration_tasks"],
    held_out_tasks=DEFAULTS["held_out_tasks"],
    unseen_task_fraction: float = DEFAULTS["unseen_task_fraction"],
    task_split: int = 0,
) -> Source:
    """Open a dataset with its split: ``split_path``'s if given, else ``saved_split`` (a
    checkpoint's), else a new split by rollout from the fractions and seed, with the project's
    default calibration share and automatically held-out tasks (:data:`vlarisk.data.splits.DEFAULTS`);
    ``task_split`` picks one of several leave-tasks-out splits (:func:`vlarisk.data.splits.split_rollouts`)."""
    dataset = load_dataset(data_path)
    rollouts = dataset.metadata["rollouts"]
    if split_path:
        split = read_json(split_path)
        validate_split(split, rollouts, split_path)
    elif saved_split is not None:
        split = saved_split
    else:
        split = split_rollouts(
            rollouts,
            val_fraction,
            test_fraction,
            seed,
            held_out_tasks,
            str(data_path),
            DEFAULTS["calibration_fraction"],
            unseen_task_fraction,
            calibration_tasks,
            task_split,
        )
    return Source(name, dataset, split, planting_path)


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
        if value is not None and not (isinstance(value, str) and Path(value).exists()):
            raise InputError(f"{where}.{field}: {value!r} is not an existing file")


def load_sources(
    path: str | os.PathLike,
    val_fraction: float = DEFAULTS["val_fraction"],
    test_fraction: float = DEFAULTS["test_fraction"],
    seed: int = 0,
    saved_splits: dict[str, dict] | None = None,
) -> list[Source]:
    """Open every dataset of a data config with its split (see :func:`open_source`)."""
    return [
        open_source(
            entry["model_name"],
            entry["data_path"],
            entry.get("split_path"),
            entry.get("planting_path"),
            (saved_splits or {}).get(entry["model_name"]),
            val_fraction,
            test_fraction,
            seed,
        )
        for entry in read_data_config(path)
    ]


@dataclass
class TrainingSource:
    """A source as training sees it: normalisation statistics and positive-label cut-offs of its training rows."""

    source: Source
    mean: torch.Tensor
    std: torch.Tensor
    label_cutoffs: np.ndarray
    val_labels: np.ndarray

    @classmethod
    def build(cls, source: Source, normalize: bool, fraction_of_max: float) -> TrainingSource:
        """Check that the training and validation rows exist, then fix statistics and label cut-offs on the training rows."""
        for subset in ("train", "val"):
            if len(source.rows[subset]) == 0:
                raise InputError(f"{source.dataset.path}: the {subset} split of source {source.name!r} has no steps")
        dataset = source.dataset
        stats = feature_statistics(dataset.hidden, source.rows["train"]) if normalize else identity_statistics(dataset.hidden_dim)
        mean, std = (torch.from_numpy(s) for s in stats)
        return cls(source, mean, std, source.label_cutoffs(fraction_of_max), np.asarray(source.labels("val"), dtype=np.float32))

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def rows(self) -> dict[str, np.ndarray]:
        return self.source.rows
