"""Per-epoch metrics of a training run, as it goes: ``history.csv`` beside the checkpoints, and
TensorBoard event files (under ``tensorboard/``) when the ``tensorboard`` package is installed.

:class:`EpochTracker` is called once per finished epoch by :class:`vlarisk.train.training.Trainer`. The
CSV is rewritten whole from the run's history each epoch (through a temporary file renamed into
place), so a resumed run's file holds every epoch once and never a half-written line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping
from pathlib import Path

HISTORY_CSV = "history.csv"
TENSORBOARD_DIR = "tensorboard"
# Scalar validation metrics written per epoch, besides the losses (nested ones are left out).
SKIPPED = ("collapse", "per_source")


def epoch_rows(history: Mapping) -> list[dict]:
    """One row per epoch of a trainer's history: epoch, losses, time, throughput and every scalar
    validation metric (``val_<name>``)."""
    rows = []
    for index, train_loss in enumerate(history.get("train_loss", [])):
        metrics = history["val_metrics"][index] if index < len(history.get("val_metrics", [])) else {}
        row = {"epoch": index + 1, "train_loss": train_loss, "val_loss": _at(history, "val_loss", index)}
        row["epoch_seconds"] = _at(history, "epoch_seconds", index)
        row["samples_per_second"] = _at(history, "samples_per_second", index)
        for name, value in metrics.items():
            if name in SKIPPED or name == "loss":
                continue
            if value is None or isinstance(value, (int, float)):
                row[f"val_{name}"] = value
        row["collapsed"] = bool(metrics.get("collapse"))
        rows.append(row)
    return rows


def _at(history: Mapping, key: str, index: int):
    values = history.get(key, [])
    return values[index] if index < len(values) else None


def write_history_csv(path: str | os.PathLike, history: Mapping) -> None:
    """Write the history as CSV at ``path`` (atomically: a temporary file renamed into place)."""
    rows = epoch_rows(history)
    columns = list(dict.fromkeys(name for row in rows for name in row))
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows({name: "" if row.get(name) is None else row[name] for name in columns} for row in rows)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


class EpochTracker:
    """Writes ``history.csv`` in ``output_dir`` each epoch, and TensorBoard scalars when possible."""

    def __init__(self, output_dir: str | os.PathLike, log: Callable[[str], None] = print, tensorboard: bool = True):
        self.output_dir = Path(output_dir)
        self.log = log
        self.writer = self._tensorboard_writer() if tensorboard else None

    def _tensorboard_writer(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional (torch.utils.tensorboard needs it)
            self.log("tensorboard is not installed: per-epoch metrics go to history.csv only")
            return None
        return SummaryWriter(log_dir=str(self.output_dir / TENSORBOARD_DIR))

    def epoch_done(self, history: Mapping) -> None:
        """Record the last epoch of ``history`` (and rewrite history.csv with every epoch)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_history_csv(self.output_dir / HISTORY_CSV, history)
        if self.writer is not None:
            row = epoch_rows(history)[-1]
            for name, value in row.items():
                if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(name.replace("val_", "val/", 1).replace("train_", "train/", 1), value, row["epoch"])
            self.writer.flush()


_TRACKERS: dict[Path, EpochTracker] = {}


def record_epoch(output_dir: str | os.PathLike, history: Mapping, log: Callable[[str], None] = print) -> None:
    """:meth:`EpochTracker.epoch_done` of the tracker of ``output_dir`` (made on its first epoch)."""
    key = Path(output_dir).resolve()
    if key not in _TRACKERS:
        _TRACKERS[key] = EpochTracker(output_dir, log)
    _TRACKERS[key].epoch_done(history)
