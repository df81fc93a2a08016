"""Load pickles without running the code they name: builtins' data types, numpy arrays, torch tensors.

A pickle can name any importable callable and have it called while loading; rollout files come from
clusters and colleagues, so every pickle this project reads goes through :func:`load_pickle`.

Hidden states saved by a hook on a VLA are often torch tensors. A plain ``pickle.dump`` of a tensor
names two torch functions: ``torch.storage._load_from_bytes`` (whose own bytes are a ``torch.save``
archive, which torch itself would read with ``weights_only=False``) and a ``torch._utils`` rebuild
function. Those names are admitted here and bound to stand-ins (:data:`TORCH_GLOBALS`): the archive
is read with ``torch.load(weights_only=True)`` (torch's own allow-list: storages, dtypes, rebuild
functions) and every tensor becomes a numpy array. A ``torch.save`` file (a zip archive) is read the
same way. torch is imported only when a file holds tensors.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import gc
import importlib.util
import io
import os
import pickle
import re
from typing import Any

import numpy as np

from vlarisk.core.errors import InputError, UnsafePickleError

ALLOWED_GLOBALS = frozenset(
    {
        ("builtins", name)
        for name in (
            "list",
            "dict",
            "tuple",
            "set",
            "frozenset",
            "bytearray",
            "bytes",
            "str",
            "int",
            "float",
            "complex",
            "bool",
            "slice",
            "range",
        )
    }
    | {
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # protocol-2 pickles of numpy arrays encode raw bytes with it
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


def _storage_from_bytes(data: bytes) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes``: the storage's ``torch.save`` bytes read with
    ``weights_only=True`` (torch's allow-list) onto the CPU; anything but a storage is refused."""
    import torch

    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError(f"refusing a torch storage made from {type(data).__name__}: expected bytes")
    storage = _torch_load(io.BytesIO(data))
    if not isinstance(storage, (torch.storage.TypedStorage, torch.storage.UntypedStorage)):
        raise UnsafePickleError(f"refusing a torch storage that holds {type(storage).__name__}: expected a storage")
    return storage


def _tensor_as_array(
    storage: Any, offset: int, size: tuple, stride: tuple, requires_grad: bool = False, hooks: Any = None, metadata: Any = None
) -> np.ndarray:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: the tensor torch would rebuild, as a numpy array."""
    import torch

    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f"refusing a torch tensor rebuilt from {type(storage).__name__}: expected a storage")
    if hooks:
        raise UnsafePickleError("refusing a torch tensor with backward hooks: only plain tensors are allowed")
    return tensor_to_numpy(torch._utils._rebuild_tensor(storage, int(offset), tuple(size), tuple(stride)))


def _parameter_as_array(data: Any, requires_grad: bool = False, hooks: Any = None) -> Any:
    """Stand-in for ``torch._utils._rebuild_parameter``: a ``torch.nn.Parameter`` is its data."""
    if hooks:
        raise UnsafePickleError("refusing a torch parameter with backward hooks: only plain tensors are allowed")
    return data


# Every global a plain ``pickle.dump`` of a CPU or CUDA tensor (or nn.Parameter) names, and what it is bound to.
TORCH_GLOBALS = {
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _tensor_as_array,
    ("torch._utils", "_rebuild_parameter"): _parameter_as_array,
}


def tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor as a CPU numpy array without gradients; bfloat16 (unknown to numpy) as float32."""
    import torch

    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()


def _tensors_to_numpy(value: Any) -> Any:
    """``value`` with every torch tensor inside lists, tuples and dicts replaced by a numpy array."""
    import torch

    if isinstance(value, torch.Tensor):
        return tensor_to_numpy(value)
    if isinstance(value, dict):
        return type(value)((key, _tensors_to_numpy(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_tensors_to_numpy(item) for item in value)
    return value


def numpy_safe_globals():
    """Context allowing numpy's data-only globals (as in :data:`ALLOWED_GLOBALS`) in ``torch.load(weights_only=True)``."""
    import torch

    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # torch < 2.5
        return contextlib.nullcontext()
    core = np._core if hasattr(np, "_core") else np.core
    allowed: list = [np.ndarray, np.dtype, *(getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType"))]
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")):
        obj = getattr(getattr(core, module), name)
        allowed += [(obj, f"numpy._core.{module}.{name}"), (obj, f"numpy.core.{module}.{name}")]
    return safe_globals(allowed)


def _torch_load(handle: Any) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU; a refused global raises :class:`UnsafePickleError` naming it."""
    import torch

    try:
        with numpy_safe_globals():
            return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused is None:
            raise
        name = refused.group(1) if "." in refused.group(1) else f"builtins.{refused.group(1)}"  # torch drops "builtins."
        raise UnsafePickleError(
            f"refusing to load global '{name}': torch data is read with weights_only=True (tensors and plain data only)"
        ) from None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in :data:`ALLOWED_GLOBALS` and :data:`TORCH_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        if name == "_frombuffer" and (module, name) in ALLOWED_GLOBALS:
            return _frombuffer
        if (module, name) in ALLOWED_GLOBALS or _is_numpy_dtype_class(module, name):
            return super().find_class(_installed_numpy_module(module), name)
        if (module, name) in TORCH_GLOBALS:
            _require_torch(module, name)
            return TORCH_GLOBALS[module, name]
        raise UnsafePickleError(f"refusing to load global '{module}.{name}': only plain data, numpy arrays and torch tensors are allowed")


def _require_torch(module: str, name: str) -> None:
    """A file with torch tensors needs torch to read them; say so instead of a bare ImportError."""
    if importlib.util.find_spec("torch") is None:
        raise InputError(f"the file holds torch tensors ('{module}.{name}'), and torch is not installed: pip install torch")


def _frombuffer(buffer: Any, dtype: np.dtype, shape: tuple, order: str) -> np.ndarray:
    """numpy's ``_frombuffer`` (how protocol 5 stores arrays) without a reshaped view of vectors.

    numpy's version always returns ``frombuffer(...).reshape(shape)``: a second array object per
    array. A rollout file holds a few hundred thousand arrays, mostly vectors, so returning the
    flat array itself when it already has the shape saves 5–10% of the loading time.
    """
    array = np.frombuffer(buffer, dtype=dtype)
    return array if array.shape == tuple(shape) else array.reshape(shape, order=order)


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Protocol-2 pickles name builtins the Python 2 way (``__builtin__.bytes``); use today's names."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _is_numpy_dtype_class(module: str, name: str) -> bool:
    """numpy >= 1.25 pickles dtypes by their class, e.g. ``numpy.dtypes.Float32DType``."""
    return module == "numpy.dtypes" and name.endswith("DType") and name.isidentifier()


def _installed_numpy_module(module: str) -> str:
    """numpy 2 renamed ``numpy.core`` to ``numpy._core``; files written by either version name theirs.

    Resolving the name to the installed layout loads both without numpy's deprecation warning
    (numpy 2 warns on ``numpy.core.numeric``) and lets numpy 1.x read numpy-2 pickles.
    """
    if not module.startswith(("numpy.core.", "numpy._core.")):
        return module
    tail = module.split(".", 2)[2]
    return f"numpy._core.{tail}" if _NUMPY_HAS_CORE_PACKAGE else f"numpy.core.{tail}"


_NUMPY_HAS_CORE_PACKAGE = importlib.util.find_spec("numpy._core") is not None

# Every pickle protocol from 2 on starts with the PROTO opcode (0x80); used only to word errors.
_PROTO_OPCODE = 0x80
_PREVIEW_BYTES = 8  # leading bytes quoted by the "not a pickle file" message
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def _load_torch_archive(path: str | os.PathLike) -> Any:
    """A ``torch.save`` file, read with ``weights_only=True``, its tensors as numpy arrays."""
    _require_torch("torch", "save")
    return _tensors_to_numpy(_torch_load(path))


def load_pickle(path: str | os.PathLike) -> Any:
    """Read a pickle file safely; every failure becomes an :class:`InputError` naming the file."""
    head = b""
    try:
        with open(path, "rb", buffering=0) as raw:
            if os.fstat(raw.fileno()).st_size == 0:
                raise InputError(f"{path}: file is empty")
            head = raw.read(_PREVIEW_BYTES)
            raw.seek(0)
            if head.startswith(_ZIP_MAGIC):
                return _load_torch_archive(path)
            with io.BufferedReader(raw, buffer_size=1 << 20) as handle, _collection_paused():
                return RestrictedUnpickler(handle).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a pickle file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    except MemoryError:
        raise InputError(f"{path}: ran out of memory while reading the pickle") from None
    except Exception as exc:  # any decoding failure of the bytes: truncated, corrupt or not a pickle
        if head and head[0] != _PROTO_OPCODE:
            raise InputError(f"{path}: not a pickle file (it starts with {head!r}; {type(exc).__name__}: {exc})") from None
        raise InputError(f"{path}: not a readable pickle (truncated or corrupt?): {type(exc).__name__}: {exc}") from None


@contextlib.contextmanager
def _collection_paused():
    """Pause Python's cyclic garbage collector while a pickle loads.

    Loading creates millions of containers (a dict per step) and no garbage; with the collector on,
    its generation sweeps re-scan everything built so far and take 40% of the loading time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
