"""The prepared dataset: one memory-mappable file holding every step's arrays and its metadata.

Layout (``.vlarisk``): an 8-byte magic, then each array's raw bytes at a 64-byte-aligned offset,
then a JSON footer describing the arrays and the metadata, then the footer's length and a closing
magic. The footer comes last so that preparation can stream hidden states straight to disk without
knowing the step count in advance. Readers memory-map the arrays: opening a multi-GB dataset costs
no memory until rows are touched.

A ``.pkl`` path instead holds the training guide's pickle layout (``{"dataset": [...],
"metadata": {...}}``) with rollout/task/step ids added, for older tools; :func:`load_dataset`
reads both.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlarisk.constants import NUM_DIMENSIONS
from vlarisk.errors import InputError
from vlarisk.io_utils import atomic_path
from vlarisk.safe_pickle import load_pickle

MAGIC = b"VLARISK\x01"
FOOTER_MAGIC = b"VLRFOOT1"
ALIGNMENT = 64
FORMAT_VERSION = 1

# Per-step arrays besides the hidden states, with their on-disk dtypes.
STEP_FIELDS = {
    "risk_label": np.float32,  # [N, 7]
    "action": np.float32,  # [N, 7]
    "rollout_id": np.int32,
    "task_index": np.int32,
    "step_index": np.int32,
    "success": np.uint8,
    "collision": np.uint8,
    "time_to_failure": np.int32,
    "fail_within_k": np.uint8,
    "has_provided_label": np.uint8,
}


@dataclass
class RiskDataset:
    """Arrays of a prepared dataset (``hidden`` memory-mapped) and its metadata dict."""

    hidden: np.ndarray
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]
    path: str

    def __len__(self) -> int:
        return int(self.hidden.shape[0])

    @property
    def hidden_dim(self) -> int:
        return int(self.hidden.shape[1])

    @property
    def labels(self) -> np.ndarray:
        return self.arrays["risk_label"]

    @property
    def rollout_id(self) -> np.ndarray:
        return self.arrays["rollout_id"]

    @property
    def content_hash(self) -> str:
        return self.metadata["content_sha256"]


class DatasetWriter:
    """Streams hidden-state blocks to a ``.vlarisk`` file, then writes the other arrays and footer.

    Use as a context manager: the file appears at ``path`` only when :meth:`finish` succeeded.
    """

    def __init__(self, path: str | os.PathLike, hidden_dim: int | None = None) -> None:
        self.path = Path(path)
        self.hidden_dim = hidden_dim
        self.num_rows = 0
        self._digest = hashlib.sha256()
        self._entries: dict[str, dict] = {}
        self._atomic = atomic_path(self.path)
        self._finished = False
        self._flusher: _Flusher | None = None

    def __enter__(self) -> DatasetWriter:
        self._tmp = self._atomic.__enter__()
        self._handle = open(self._tmp, "wb")
        self._handle.write(MAGIC)
        self._hidden_offset = self._pad()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._flusher is not None:
            self._flusher.close(raise_error=False)  # before the file descriptor goes away
        self._handle.close()
        if exc_type is not None:
            self._atomic.__exit__(exc_type, exc, tb)  # removes the partial file
            return False
        if not self._finished:
            self._atomic.__exit__(RuntimeError, RuntimeError(), None)
            raise RuntimeError("DatasetWriter closed without finish(); nothing was written")
        self._atomic.__exit__(None, None, None)
        return False

    def _pad(self) -> int:
        offset = self._handle.tell()
        padding = (-offset) % ALIGNMENT
        self._handle.write(b"\0" * padding)
        return offset + padding

    def _write(self, array: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(array)).cast("B")
        self._digest.update(data)
        self._handle.write(data)

    def append_hidden(self, block: np.ndarray) -> None:
        """Append ``[n, D]`` float32 hidden states (written through, not kept in memory).

        Hashing and the disk's write-back happen on another thread while the caller reads the next
        rollouts (see :class:`_Flusher`).
        """
        block = np.asarray(block, dtype=np.float32)
        if self.hidden_dim is None:
            self.hidden_dim = int(block.shape[1])
        if block.ndim != 2 or block.shape[1] != self.hidden_dim:
            raise ValueError(f"hidden block shape {block.shape} does not match hidden_dim {self.hidden_dim}")
        if self._flusher is None:
            self._flusher = _Flusher(self._handle, self._tmp, self._digest, self._hidden_offset)
        self._handle.write(memoryview(np.ascontiguousarray(block)).cast("B"))
        self._flusher.wrote(block.nbytes)
        self.num_rows += block.shape[0]

    def finish(self, step_arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        """Write the per-step arrays (one row per appended hidden state) and the footer."""
        if self._flusher is not None:
            self._flusher.close()  # the digest now covers every hidden state, in order
            self._flusher = None
        self._entries["hidden"] = {"dtype": "float32", "shape": [self.num_rows, self.hidden_dim or 0], "offset": self._hidden_offset}
        for name, dtype in STEP_FIELDS.items():
            array = np.asarray(step_arrays[name], dtype=dtype)
            if array.shape[0] != self.num_rows:
                raise ValueError(f"array {name!r} has {array.shape[0]} rows, expected {self.num_rows}")
            offset = self._pad()
            self._write(array)
            self._entries[name] = {"dtype": np.dtype(dtype).name, "shape": list(array.shape), "offset": offset}
        footer = {
            "format": "vlarisk-dataset",
            "version": FORMAT_VERSION,
            "arrays": self._entries,
            "metadata": {
                **metadata,
                "num_samples": self.num_rows,
                "hidden_dim": self.hidden_dim,
                "content_sha256": self._digest.hexdigest(),
            },
        }
        encoded = json.dumps(footer, sort_keys=True, allow_nan=False).encode()
        self._handle.write(encoded)
        self._handle.write(struct.pack("<Q", len(encoded)) + FOOTER_MAGIC)
        self._finished = True


class _Flusher:
    """Hashes the hidden states back from the file, and has the kernel write them to disk, on a thread.

    The caller only copies each block into the file; every ``every`` bytes this thread reads the
    new bytes back from the page cache in ``chunk``-sized pieces, feeds them to the sha256 digest
    (the GIL is released while reading and hashing, so this runs on another core) and calls
    ``fdatasync``, so the disk works during preparation instead of all at the final fsync of
    :func:`~vlarisk.io_utils.atomic_path`. Hashing blocks on a worker thread as they are handed
    over would not help: unpickling holds the GIL, and a thread that needs it after every block
    mostly waits.
    """

    def __init__(self, handle, path, digest, start: int, every: int = 64 << 20, chunk: int = 16 << 20) -> None:
        self.handle, self.fileno, self.digest = handle, handle.fileno(), digest
        self.reader = os.open(path, os.O_RDONLY)  # the writer's handle is write-only
        self.hashed = self.written = self.target = start  # file offsets
        self.every, self.pending = every, 0
        self.buffer = memoryview(bytearray(chunk))
        self.error: BaseException | None = None
        self.wake, self.stopping = threading.Event(), False
        self.thread = threading.Thread(target=self._run, name="vlarisk-dataset-flusher", daemon=True)
        self.thread.start()

    def wrote(self, nbytes: int) -> None:
        self.written += nbytes
        self.pending += nbytes
        if self.pending >= self.every:
            self.pending = 0
            self.handle.flush()  # the thread reads what the OS has
            self.target = self.written
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            target, stopping = self.target, self.stopping
            try:
                while self.hashed < target:
                    n = os.preadv(self.reader, [self.buffer[: min(len(self.buffer), target - self.hashed)]], self.hashed)
                    if n <= 0:
                        raise OSError(f"short read at offset {self.hashed} while hashing the dataset")
                    self.digest.update(self.buffer[:n])
                    self.hashed += n
                if not stopping:
                    os.fdatasync(self.fileno)
            except BaseException as exc:  # re-raised by close()
                self.error = exc
                return
            if stopping:
                return

    def close(self, raise_error: bool = True) -> None:
        """Hash every byte written so far, then stop the thread (re-raising its error)."""
        if self.thread.is_alive():
            self.handle.flush()
            self.target = self.written
            self.stopping = True
            self.wake.set()
            self.thread.join()
            os.close(self.reader)
        if raise_error and self.error is not None:
            raise self.error


def _read_footer(path: Path) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if size < len(MAGIC) + 16 or handle.read(len(MAGIC)) != MAGIC:
            raise InputError(f"{path}: not a vlarisk dataset (bad magic)")
        handle.seek(size - 16)
        length_bytes, closing = handle.read(8), handle.read(8)
        if closing != FOOTER_MAGIC:
            raise InputError(f"{path}: dataset is truncated or incomplete (no footer)")
        (length,) = struct.unpack("<Q", length_bytes)
        if length > size - len(MAGIC) - 16:
            raise InputError(f"{path}: dataset footer is corrupt (length {length} exceeds the file)")
        handle.seek(size - 16 - length)
        try:
            footer = json.loads(handle.read(length))
            entries = footer["arrays"]
            end = size - 16 - length
            for name, entry in entries.items():
                nbytes = int(np.dtype(entry["dtype"]).itemsize * np.prod(entry["shape"], dtype=np.int64))
                if entry["offset"] < len(MAGIC) or entry["offset"] + nbytes > end:
                    raise InputError(f"{path}: dataset is corrupt (array {name!r} lies outside the data section)")
            missing = {"hidden", *STEP_FIELDS} - set(entries)
            if missing or not isinstance(footer.get("metadata"), dict):
                raise InputError(f"{path}: dataset footer lacks {sorted(missing) or ['metadata']}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: dataset footer is corrupt ({type(exc).__name__}: {exc})") from None
        return footer


def _load_vlarisk(path: Path) -> RiskDataset:
    footer = _read_footer(path)
    arrays = {}
    for name, entry in footer["arrays"].items():
        shape = tuple(entry["shape"])
        if 0 in shape:
            arrays[name] = np.zeros(shape, dtype=entry["dtype"])
        else:
            arrays[name] = np.memmap(path, dtype=entry["dtype"], mode="r", offset=entry["offset"], shape=shape)
    hidden = arrays.pop("hidden")
    return RiskDataset(hidden=hidden, arrays=arrays, metadata=footer["metadata"], path=str(path))


def _load_legacy_pickle(path: Path) -> RiskDataset:
    """Read the guide's ``*_dataset.pkl``; it must carry rollout ids, or no honest split exists."""
    payload = load_pickle(path)
    rollouts = payload.get("trajectories") if isinstance(payload, dict) else payload
    if isinstance(rollouts, list) and rollouts and isinstance(rollouts[0], dict) and {"steps", "actions", "features"} & set(rollouts[0]):
        raise InputError(f"{path}: holds rollouts, not a prepared dataset; run prepare_training_data.py on it first")
    samples, metadata = (payload.get("dataset"), payload.get("metadata", {})) if isinstance(payload, dict) else (payload, {})
    if not isinstance(samples, list) or not samples:
        raise InputError(f"{path}: expected a dict with a non-empty 'dataset' list (or a bare list of samples)")
    if any(not isinstance(s, dict) for s in samples):
        raise InputError(f"{path}: every sample must be a dict")
    if "rollout_id" not in samples[0]:
        raise InputError(
            f"{path}: samples carry no 'rollout_id', so the data cannot be split by rollout without leaking; "
            "re-run prepare_training_data.py on the rollout pickles"
        )
    hidden = _legacy_hidden(samples, path)
    defaults = {"task_index": 0, "step_index": 0, "has_provided_label": 0, "collision": 0, "time_to_failure": -1, "fail_within_k": 0}
    arrays = {}
    for name, dtype in STEP_FIELDS.items():
        try:
            arrays[name] = np.asarray([s.get(name, defaults.get(name)) for s in samples], dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{path}: {_first_malformed(samples, name, defaults.get(name))}field {name!r} is missing or malformed ({exc})"
            ) from None
    _check_labels(arrays["risk_label"], path)
    digest = hashlib.sha256(hidden.tobytes()).hexdigest()
    metadata = {**metadata, "num_samples": len(samples), "hidden_dim": hidden.shape[1], "content_sha256": digest}
    metadata.setdefault("rollouts", _rollout_table_from_arrays(arrays))
    return RiskDataset(hidden=hidden, arrays=arrays, metadata=metadata, path=str(path))


def _legacy_hidden(samples: list[dict], path: Path) -> np.ndarray:
    """Stack the samples' hidden states, naming the first sample that is missing, ragged or non-finite."""
    first = None
    for index, sample in enumerate(samples):
        try:
            state = np.asarray(sample["hidden_state"], dtype=np.float32)
        except KeyError:
            raise InputError(f"{path}: sample {index} lacks field 'hidden_state'") from None
        except (TypeError, ValueError):
            raise InputError(f"{path}: sample {index}: field 'hidden_state' is not numeric") from None
        if first is None:
            first = state.shape
        if state.ndim != 1 or state.shape != first:
            raise InputError(f"{path}: sample {index}: field 'hidden_state' has shape {state.shape}, but sample 0 has {first}")
        if not np.isfinite(state).all():
            raise InputError(f"{path}: sample {index}: field 'hidden_state' contains NaN or Inf")
    return np.stack([np.asarray(sample["hidden_state"], dtype=np.float32) for sample in samples])


def _first_malformed(samples: list[dict], name: str, default) -> str:
    """``"sample i: "`` for the first sample whose field differs in shape from sample 0's, else ``""``."""
    try:
        shapes = [np.shape(s.get(name, default)) for s in samples]
    except (TypeError, ValueError):
        return ""
    odd = next((i for i, shape in enumerate(shapes) if shape != shapes[0]), None)
    return "" if odd is None else f"sample {odd}: "


def _check_labels(labels: np.ndarray, path) -> None:
    """Risk labels must be ``[N, 7]``, finite and in [0, 1]; name the first sample that is not."""
    if labels.ndim != 2 or labels.shape[1] != NUM_DIMENSIONS:
        raise InputError(f"{path}: 'risk_label' must have shape [N, {NUM_DIMENSIONS}], got {labels.shape}")
    bad = ~np.isfinite(labels).all(axis=1)
    if bad.any():
        raise InputError(f"{path}: sample {int(np.flatnonzero(bad)[0])}: field 'risk_label' contains NaN or Inf")
    bad = ((labels < 0) | (labels > 1)).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: sample {row}: field 'risk_label' has values outside [0, 1]: {np.asarray(labels[row]).tolist()}")


def _rollout_table_from_arrays(arrays: dict[str, np.ndarray]) -> list[dict]:
    ids, first = np.unique(arrays["rollout_id"], return_index=True)
    return [
        {"rollout_id": int(r), "success": bool(arrays["success"][i]), "task": str(arrays["task_index"][i])}
        for r, i in zip(ids, first, strict=True)
    ]


def load_dataset(path: str | os.PathLike) -> RiskDataset:
    """Open a prepared dataset (``.vlarisk`` memory-mapped, or a guide-style ``.pkl``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: dataset file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a dataset file")
    dataset = _load_legacy_pickle(path) if path.suffix == ".pkl" else _load_vlarisk(path)
    _check_labels(dataset.labels, path)
    return dataset


def write_legacy_pickle(dataset: RiskDataset, path: str | os.PathLike) -> None:
    """Write the guide's ``{"dataset": [sample, ...], "metadata": {...}}`` pickle, ids included."""
    samples = []
    for row in range(len(dataset)):
        sample = {"hidden_state": np.array(dataset.hidden[row])}
        for name in STEP_FIELDS:
            value = dataset.arrays[name][row]
            sample[name] = np.array(value) if value.ndim else value.item()
        samples.append(sample)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump({"dataset": samples, "metadata": dataset.metadata}, handle, protocol=pickle.HIGHEST_PROTOCOL)
