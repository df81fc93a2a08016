"""The exception types entry points print as one plain line (see :mod:`vlarisk.core.cli`)."""

from __future__ import annotations

import errno
import os


class InputError(ValueError):
    """A file or config the user supplied is unusable; the message names the file and the field."""


class UnsafePickleError(InputError):
    """A pickle asked to load a global that is not plain data (it could run code)."""


class DeviceError(InputError):
    """The requested compute device cannot be used here; the message says why (torch build, driver, job variables)."""


class OutputError(OSError):
    """An output could not be written for lack of space (a full disk, an exceeded quota).

    ``filename`` is the output's path; the message says what happened and that nothing of the
    output was kept (the partial file is removed before this is raised).
    """

    def __init__(self, path: str | os.PathLike, code: int | None, detail: str) -> None:
        super().__init__(code, detail, str(path))
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.filename}: {self.detail}"


# errno values that mean "no room": a full file system, an exceeded quota (EDQUOT is absent on some platforms).
NO_SPACE_ERRNOS = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)
