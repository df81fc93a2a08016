"""The prepared dataset: a directory of ``.npy`` arrays plus ``metadata.json``, each distinct hidden state stored once.

Layout (any output name not ending in ``.pkl``, e.g. ``dataset.vlarisk/``)::

    states.npy        float32 [S, D]   every distinct hidden state, once
    state_index.npy   int32   [N]      per step: its row in states.npy
    risk_label.npy    float32 [N, 7]   ...and every other per-step field (STEP_FIELDS), one .npy each
    metadata.json     format, version, the arrays' dtypes and shapes, and the dataset's metadata

A VLA that predicts action chunks repeats one hidden state for every step of a chunk, so storing
states once and an index per step shrinks the dataset about chunk-size times; data without repeats
has ``state_index == arange(N)``. Any numpy user can open the arrays with
``np.load(path / "states.npy", mmap_mode="r")``. ``states.npy`` is streamed to disk while the
rollouts are read (its header is written last), the directory appears at its path only when
complete (``metadata.json`` included), and ``content_sha256`` is the sha256 of every array's
data in the order of :data:`ARRAY_ORDER`.

A ``.pkl`` path instead holds the training guide's pickle layout (``{"dataset": [...],
"metadata": {...}}``) with rollout/task/step ids added, for older tools. :func:`load_dataset`
reads both.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import struct
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlarisk.core.constants import NUM_DIMENSIONS
from vlarisk.core.errors import InputError
from vlarisk.core.io_utils import _host, _pid_alive, atomic_path
from vlarisk.data.safe_pickle import load_pickle

FORMAT_NAME = "vlarisk-dataset"
FORMAT_VERSION = 2
METADATA_FILE = "metadata.json"
NPY_HEADER_BYTES = 128  # fixed, so the header of the streamed states.npy can be written last
PARTIAL_DIR_SUFFIX = ".partial-dir"

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
ARRAY_ORDER = ("states", "state_index", *STEP_FIELDS)  # the order the content hash covers


class StepStates:
    """Read-only per-step view ``[N, D]`` of the distinct states: row ``i`` is ``states[index[i]]``.

    Indexing (an int, a slice or an index array) returns a fresh ndarray, as indexing a memory-map
    does, so code written for one hidden state per step keeps working; heavy consumers use
    ``states`` and ``index`` directly to touch each distinct state once.
    """

    def __init__(self, states: np.ndarray, index: np.ndarray) -> None:
        self.states, self.index = states, index

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.index), self.states.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.states.dtype

    ndim = 2

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            rows, rest = key[0], key[1:]
            return np.asarray(self[rows])[(slice(None), *rest) if not np.isscalar(rows) else rest]
        picked = self.index[key]
        if np.ndim(picked) == 0:
            return np.array(self.states[int(picked)])
        return np.take(self.states, np.asarray(picked, dtype=np.int64), axis=0)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[:]
        return array if dtype is None else array.astype(dtype, copy=False)


def distinct_states(hidden) -> tuple[np.ndarray, np.ndarray]:
    """``(states, index)`` of a per-step array or :class:`StepStates`: the distinct rows it is made of."""
    if isinstance(hidden, StepStates):
        return hidden.states, hidden.index
    return hidden, np.arange(len(hidden))


@dataclass
class RiskDataset:
    """A prepared dataset: distinct hidden ``states`` (memory-mapped), each step's ``state_index``,
    the other per-step ``arrays`` and the metadata dict."""

    states: np.ndarray
    state_index: np.ndarray
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]
    path: str

    def __len__(self) -> int:
        return int(self.state_index.shape[0])

    @property
    def hidden(self) -> StepStates:
        """Every step's hidden state ``[N, D]`` (a view that reads from ``states``)."""
        return StepStates(self.states, self.state_index)

    @property
    def hidden_dim(self) -> int:
        return int(self.states.shape[1])

    @property
    def labels(self) -> np.ndarray:
        return self.arrays["risk_label"]

    @property
    def rollout_id(self) -> np.ndarray:
        return self.arrays["rollout_id"]

    @property
    def content_hash(self) -> str:
        return self.metadata["content_sha256"]


def npy_header(dtype, shape: tuple[int, ...]) -> bytes:
    """A ``.npy`` (version 1.0) header of exactly :data:`NPY_HEADER_BYTES` bytes."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(int(s) for s in shape)})
    body = text.encode("latin1")
    room = NPY_HEADER_BYTES - 10 - 1
    if len(body) > room:
        raise ValueError(f"array shape {shape} too large for a {NPY_HEADER_BYTES}-byte header")
    body = body + b" " * (room - len(body)) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it into place only if the block succeeds.

    Its files must be fsynced by the writer; the directory entries are fsynced here. An existing
    output (a directory, or a file of an earlier version) is moved aside and removed only after
    the new one is in place. Temporary directories of writers that died are removed on the next
    write of the same target.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_directories(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}@{_host()}.", suffix=PARTIAL_DIR_SUFFIX, dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _fsync_directory(tmp)
        old = None
        if target.exists() or target.is_symlink():
            old = tmp.with_name(tmp.name[: -len(PARTIAL_DIR_SUFFIX)] + ".old" + PARTIAL_DIR_SUFFIX)
            os.rename(target, old)
        os.rename(tmp, target)
        _fsync_directory(target.parent)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_directories(target: Path) -> None:
    """Delete temporary directories of ``target`` whose writer (a process of this host) is gone."""
    prefix = f".{target.name}."
    for candidate in target.parent.iterdir():
        name = candidate.name
        if not (name.startswith(prefix) and name.endswith(PARTIAL_DIR_SUFFIX)):
            continue
        owner = name[len(prefix) :].split(".", 1)[0]
        pid, _, host = owner.partition("@")
        if host == _host() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)


class DatasetWriter:
    """Streams distinct hidden states to ``states.npy``, then writes the per-step arrays and ``metadata.json``.

    Use as a context manager: the dataset directory appears at ``path`` only when :meth:`finish`
    succeeded; on any error nothing is left behind.
    """

    def __init__(self, path: str | os.PathLike, hidden_dim: int | None = None) -> None:
        self.path = Path(path)
        self.hidden_dim = hidden_dim
        self.num_states = 0
        self._digest = hashlib.sha256()
        self._finished = False
        self._flusher: _Flusher | None = None

    @property
    def num_rows(self) -> int:
        """Distinct states written so far (one per step when every step was appended as its own state)."""
        return self.num_states

    def __enter__(self) -> DatasetWriter:
        self._atomic = atomic_directory(self.path)
        self._dir = self._atomic.__enter__()
        self._states_path = self._dir / "states.npy"
        self._handle = open(self._states_path, "wb")
        self._handle.write(b"\0" * NPY_HEADER_BYTES)  # the real header is written by finish()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._flusher is not None:
            self._flusher.close(raise_error=False)  # before the file descriptor goes away
        if not self._handle.closed:
            self._handle.close()
        if exc_type is not None:
            self._atomic.__exit__(exc_type, exc, tb)  # removes the partial directory
            return False
        if not self._finished:
            self._atomic.__exit__(RuntimeError, RuntimeError(), None)
            raise RuntimeError("DatasetWriter closed without finish(); nothing was written")
        self._atomic.__exit__(None, None, None)
        return False

    def append_hidden(self, block: np.ndarray) -> int:
        """Append ``[n, D]`` float32 distinct states (written through, not kept in memory); return
        the row of the first one in ``states.npy``.

        Hashing and the disk's write-back happen on another thread while the caller reads the next
        rollouts (see :class:`_Flusher`).
        """
        block = np.asarray(block, dtype=np.float32)
        if self.hidden_dim is None:
            self.hidden_dim = int(block.shape[1])
        if block.ndim != 2 or block.shape[1] != self.hidden_dim:
            raise ValueError(f"hidden block shape {block.shape} does not match hidden_dim {self.hidden_dim}")
        if self._flusher is None:
            self._flusher = _Flusher(self._handle, self._states_path, self._digest, NPY_HEADER_BYTES)
        self._handle.write(memoryview(np.ascontiguousarray(block)).cast("B"))
        self._flusher.wrote(block.nbytes)
        first = self.num_states
        self.num_states += block.shape[0]
        return first

    def finish(self, step_arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        """Write the per-step arrays and ``metadata.json``.

        ``step_arrays`` holds every field of :data:`STEP_FIELDS`, and ``state_index`` (each step's
        row in ``states.npy``); without ``state_index`` every appended state is one step.
        """
        if self._flusher is not None:
            self._flusher.close()  # the digest now covers every state, in order
            self._flusher = None
        dim = self.hidden_dim or 0
        self._handle.seek(0)
        self._handle.write(npy_header(np.float32, (self.num_states, dim)))
        os.fsync(self._handle.fileno())
        self._handle.close()
        index = step_arrays.get("state_index")
        index = np.arange(self.num_states) if index is None else np.asarray(index)
        num_steps = len(index)
        if num_steps and (int(index.min()) < 0 or int(index.max()) >= self.num_states):
            raise ValueError(f"state_index out of range for {self.num_states} states")
        entries = {"states": {"dtype": "float32", "shape": [self.num_states, dim]}}
        for name, dtype in (("state_index", np.int32), *STEP_FIELDS.items()):
            array = np.ascontiguousarray(index if name == "state_index" else step_arrays[name], dtype=dtype)
            if array.shape[0] != num_steps:
                raise ValueError(f"array {name!r} has {array.shape[0]} rows, expected {num_steps}")
            with open(self._dir / f"{name}.npy", "wb") as handle:
                handle.write(npy_header(dtype, array.shape))
                data = memoryview(array).cast("B") if array.size else b""
                self._digest.update(data)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            entries[name] = {"dtype": np.dtype(dtype).name, "shape": list(array.shape)}
        document = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "arrays": entries,
            "metadata": {
                **metadata,
                "num_samples": num_steps,
                "num_states": self.num_states,
                "hidden_dim": self.hidden_dim,
                "content_sha256": self._digest.hexdigest(),
            },
        }
        with open(self._dir / METADATA_FILE, "w") as handle:
            handle.write(json.dumps(document, sort_keys=True, allow_nan=False, indent=1))
            handle.flush()
            os.fsync(handle.fileno())
        self._finished = True


class _Flusher:
    """Hashes the hidden states back from the file, and has the kernel write them to disk, on a thread.

    The caller only copies each block into the file; every ``every`` bytes this thread reads the
    new bytes back from the page cache in ``chunk``-sized pieces, feeds them to the sha256 digest
    (the GIL is released while reading and hashing, so this runs on another core) and calls
    ``fdatasync``, so the disk works during preparation instead of all at the final fsync of
    :func:`~vlarisk.core.io_utils.atomic_path`. Hashing blocks on a worker thread as they are handed
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


def _load_directory(path: Path) -> RiskDataset:
    """Open a dataset directory: every array memory-mapped, checked against ``metadata.json``."""
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise InputError(f"{path}: is a directory but not a dataset (no {METADATA_FILE})")
    try:
        document = json.loads(meta_path.read_text())
        entries, metadata = document["arrays"], document["metadata"]
        if document.get("format") != FORMAT_NAME or not isinstance(metadata, dict) or not isinstance(entries, dict):
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT_NAME!r}")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta_path}: dataset metadata is corrupt ({type(exc).__name__}: {exc})") from None
    arrays = {}
    for name in ARRAY_ORDER:
        file = path / f"{name}.npy"
        if name not in entries:
            raise InputError(f"{meta_path}: lists no array {name!r}")
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise InputError(f"{file}: missing from the dataset") from None
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{file}: not a readable .npy array ({exc})") from None
        expected = (tuple(entries[name]["shape"]), np.dtype(entries[name]["dtype"]))
        if (array.shape, array.dtype) != expected:
            raise InputError(f"{file}: holds {array.dtype} {array.shape}, but {METADATA_FILE} says {expected[1]} {expected[0]}")
        arrays[name] = array
    states, index = arrays.pop("states"), arrays.pop("state_index")
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(states)):
        raise InputError(f"{path / 'state_index.npy'}: indices outside the {len(states)} rows of states.npy")
    return RiskDataset(states=states, state_index=index, arrays=arrays, metadata=metadata, path=str(path))


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
    return RiskDataset(states=hidden, state_index=np.arange(len(hidden)), arrays=arrays, metadata=metadata, path=str(path))


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
    """Open a prepared dataset: a dataset directory (memory-mapped) or a guide-style ``.pkl``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: dataset file not found")
    if path.is_dir():
        dataset = _load_directory(path)
    elif path.suffix == ".pkl":
        dataset = _load_legacy_pickle(path)
    else:
        raise InputError(
            f"{path}: a file, but a prepared dataset is a directory (or a guide-style .pkl); "
            "single-file datasets of vlarisk 0.1 are no longer read: prepare the data again"
        )
    _check_labels(dataset.labels, path)
    return dataset


def write_legacy_pickle(dataset: RiskDataset, path: str | os.PathLike) -> None:
    """Write the guide's ``{"dataset": [sample, ...], "metadata": {...}}`` pickle, ids included.

    Steps that share a state share one array object, which pickle stores once.
    """
    samples, shared = [], {}
    for row in range(len(dataset)):
        state = int(dataset.state_index[row])
        if state not in shared:
            shared = {state: np.array(dataset.states[state])}  # repeats of a state are consecutive in prepared data
        sample = {"hidden_state": shared[state]}
        for name in STEP_FIELDS:
            value = dataset.arrays[name][row]
            sample[name] = np.array(value) if value.ndim else value.item()
        samples.append(sample)
    metadata = {k: v for k, v in dataset.metadata.items() if k != "num_states"}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump({"dataset": samples, "metadata": metadata}, handle, protocol=pickle.HIGHEST_PROTOCOL)
