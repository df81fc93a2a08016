"""Build a training dataset from a source's success and failure rollout pickles.

Rollouts are read one file at a time and each rollout's distinct hidden states are streamed to the
output as soon as they are validated, so peak memory stays close to the larger rollout pickle.
Steps of a rollout whose hidden states are equal byte for byte (a VLA repeats its state over an
action chunk) share one stored state; every other field stays per step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from vlarisk.core.errors import InputError
from vlarisk.core.io_utils import writes_output
from vlarisk.data.dataset import STEP_FIELDS, DatasetWriter, load_dataset, write_legacy_pickle
from vlarisk.data.rollouts import RolloutReader, iter_rollouts

LABELLING_MODES = ("auto", "require", "heuristic")


@writes_output("output_path")
def prepare_dataset(
    success_path: str | os.PathLike,
    failure_path: str | os.PathLike,
    output_path: str | os.PathLike,
    labelling: str = "auto",
    deduplicate: bool = True,
) -> dict:
    """Write the dataset for one source and return its metadata.

    ``output_path`` ending in ``.pkl`` writes the guide's pickle layout; any other name writes the
    project's dataset directory (see :mod:`vlarisk.data.dataset`). ``deduplicate=False`` stores every
    step's state separately (for comparisons with per-step training).
    """
    if labelling not in LABELLING_MODES:
        raise ValueError(f"labelling must be one of {LABELLING_MODES}, got {labelling!r}")
    output_path = Path(output_path)
    if output_path.suffix == ".pkl":
        output_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=output_path.parent, prefix=f".{output_path.name}.") as scratch:
            staged = Path(scratch) / "staged.vlarisk"
            metadata = _write_dataset(success_path, failure_path, staged, labelling, deduplicate)
            write_legacy_pickle(load_dataset(staged), output_path)
        return metadata
    return _write_dataset(success_path, failure_path, output_path, labelling, deduplicate)


def distinct_rows(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: the first row of each distinct row of ``block`` (equal byte for byte), in
    order of appearance, and for every row the number of its distinct row, so ``block[first][inverse]
    == block``.

    Runs of equal consecutive rows (an action chunk) are found in one vectorised comparison; the
    remaining rows are grouped by a few sampled values and compared in full, so repeats that are
    not adjacent are merged too, and rows differing in any single element never are.
    """
    n = len(block)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    bits = np.ascontiguousarray(block, dtype=np.float32).reshape(n, -1).view(np.uint32)
    starts = np.ones(n, dtype=bool)
    starts[1:] = ~(bits[1:] == bits[:-1]).all(axis=1)
    heads = np.flatnonzero(starts)
    probe = bits[:, np.linspace(0, bits.shape[1] - 1, min(bits.shape[1], 64)).astype(np.int64)]
    groups: dict[bytes, list[int]] = {}
    head_class = np.empty(len(heads), dtype=np.int64)
    first: list[int] = []
    for position, row in enumerate(heads):
        candidates = groups.setdefault(probe[row].tobytes(), [])
        for klass in candidates:
            if np.array_equal(bits[first[klass]], bits[row]):
                head_class[position] = klass
                break
        else:
            candidates.append(len(first))
            head_class[position] = len(first)
            first.append(int(row))
    inverse = head_class[np.cumsum(starts) - 1]
    return np.asarray(first, dtype=np.int64), inverse


def _write_dataset(success_path, failure_path, output_path, labelling: str, deduplicate: bool) -> dict:
    reader = RolloutReader(labelling=labelling)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in (*STEP_FIELDS, "state_index")}
    rollouts, tasks = [], {}
    read = {True: 0, False: 0}
    with DatasetWriter(output_path) as writer:
        for path, success in ((str(success_path), True), (str(failure_path), False)):
            for index, rollout in iter_rollouts(path):
                read[success] += 1
                steps = reader.read(rollout, path, index, success)
                if steps is None:
                    continue
                if writer.hidden_dim is None:
                    writer.hidden_dim = steps.hidden.shape[1]
                if deduplicate:
                    first, inverse = distinct_rows(steps.hidden)
                    unique = steps.hidden if len(first) == len(steps.hidden) else steps.hidden[first]
                else:
                    unique, inverse = steps.hidden, np.arange(len(steps.hidden))
                columns["state_index"].append(writer.append_hidden(unique) + inverse)
                rollout_id = len(rollouts)
                task_index = tasks.setdefault(steps.task, len(tasks))
                rollouts.append(
                    {
                        "rollout_id": rollout_id,
                        "file": "success" if success else "failure",
                        "index": index,
                        "success": success,
                        "task": steps.task,
                        "num_steps": steps.num_steps,
                        "num_kept": int(steps.hidden.shape[0]),
                    }
                )
                kept = steps.hidden.shape[0]
                for name, values in steps.fields.items():
                    columns[name].append(values)
                columns["rollout_id"].append(np.full(kept, rollout_id))
                columns["task_index"].append(np.full(kept, task_index))
        _check_outcomes(rollouts, success_path, failure_path, read, reader.skips.describe())
        metadata = {
            "source_files": {"success": str(success_path), "failure": str(failure_path)},
            "labelling": labelling,
            "deduplicated": deduplicate,
            "num_success_rollouts": sum(r["success"] for r in rollouts),
            "num_failure_rollouts": sum(not r["success"] for r in rollouts),
            "num_with_labels": int(sum(c.sum() for c in columns["has_provided_label"])),
            "task_names": list(tasks),
            "rollouts": rollouts,
            **reader.skips.as_dict(),
            "other_hidden_lengths": {str(k): v for k, v in sorted(reader.hidden_lengths.items())},
        }
        arrays = {name: _concat(parts, name) for name, parts in columns.items()}
        metadata["num_without_labels"] = int(len(arrays["has_provided_label"]) - metadata["num_with_labels"])
        writer.finish(arrays, metadata)
    return metadata


def _concat(parts: list[np.ndarray], name: str) -> np.ndarray:
    if parts:
        return np.concatenate(parts)
    return np.zeros((0, 7) if name in ("risk_label", "action") else (0,))


def _check_outcomes(rollouts: list[dict], success_path, failure_path, read: dict, skipped: str) -> None:
    """A source needs usable successes and failures: without both no risk can be learned or scored."""
    if not any(r["success"] for r in rollouts):
        raise InputError(f"{success_path}: no usable successful rollouts ({read[True]} in the file; {skipped})")
    if not any(not r["success"] for r in rollouts):
        raise InputError(f"{failure_path}: no usable failed rollouts ({read[False]} in the file; {skipped})")
