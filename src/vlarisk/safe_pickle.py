"""Load pickles without running the code they name: only builtins' data types and numpy arrays.

A pickle can name any importable callable and have it called while loading; rollout files come from
clusters and colleagues, so every pickle this project reads goes through :func:`load_pickle`.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

from vlarisk.errors import InputError, UnsafePickleError

ALLOWED_GLOBALS = frozenset(
    {
        ("builtins", name)
        for name in (
            "list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes", "str",
            "int", "float", "complex", "bool", "slice", "range",
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


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS or _is_numpy_dtype_class(module, name):
            return super().find_class(module, name)
        raise UnsafePickleError(f"refusing to load global '{module}.{name}': only plain data and numpy arrays are allowed")


def _is_numpy_dtype_class(module: str, name: str) -> bool:
    """numpy >= 1.25 pickles dtypes by their class, e.g. ``numpy.dtypes.Float32DType``."""
    return module == "numpy.dtypes" and name.endswith("DType") and name.isidentifier()


def load_pickle(path: str | os.PathLike) -> Any:
    """Read a pickle file safely; every failure becomes an :class:`InputError` naming the file."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise InputError(f"{path}: file is empty")
            return RestrictedUnpickler(io.BufferedReader(handle, buffer_size=1 << 20)).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise InputError(f"{path}: not a readable pickle (truncated or corrupt?): {type(exc).__name__}: {exc}") from None
