"""Atomic file writing: an output is either complete or absent, never truncated.

Every writer goes through :func:`atomic_path`: the data goes to a hidden temporary file beside the
target (``.<name>.<pid>@<host>.<random>.partial``), which is fsynced and renamed over the target
only when the writing block finished. An exception or a SIGTERM/SIGINT handled by
:func:`vlarisk.core.cli.run` removes the temporary file; after a SIGKILL or a power cut it stays behind,
is never read by anything, and is deleted by the next write of the same target once its process
is gone.

A write that fails for lack of space (a full disk, an exceeded quota: ``ENOSPC``/``EDQUOT``, or
torch's ``unexpected pos``/``file write failed`` from ``torch.save``) becomes an
:class:`~vlarisk.core.errors.OutputError` naming the output, raised after the partial file is gone:
:func:`atomic_path` does this for every block it wraps, and :func:`translate_disk_errors` (a
context manager and decorator) for writers that manage their temporary files themselves.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import inspect
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vlarisk.core.errors import NO_SPACE_ERRNOS, OutputError

PARTIAL_SUFFIX = ".partial"
# A temporary file of another host cannot be checked for a live writer; it counts as stale after this.
FOREIGN_PARTIAL_MAX_AGE_S = 24 * 3600


# torch.save writing to a path reports a failed write without its errno, in these words.
_TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed writing")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    A lack of space anywhere in the block, the fsync or the rename raises
    :class:`~vlarisk.core.errors.OutputError` naming ``path``, the temporary file removed.
    """
    target = Path(path)
    with translate_disk_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target)
        prefix = f".{target.name}.{os.getpid()}@{_host()}."
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=PARTIAL_SUFFIX, dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, _new_file_mode())  # mkstemp makes 0600: give the output a normal file's mode
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def no_space_reason(exc: BaseException) -> tuple[int | None, str] | None:
    """``(errno, reason)`` when ``exc`` (or an exception it was raised from) says the disk or the
    quota is full, else ``None``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return exc.errno, f"{os.strerror(exc.errno).lower()} ({errno_name(exc.errno)})"
        if isinstance(exc, RuntimeError) and any(words in str(exc) for words in _TORCH_WRITE_FAILURES):
            detail = " ".join(str(exc).split())[:200]
            return None, f"torch could not write the file ({detail}); the usual cause is a full disk or an exceeded quota"
        exc = exc.__cause__ or exc.__context__
    return None


def errno_name(code: int) -> str:
    """``ENOSPC`` for 28: the symbolic name of an errno value."""
    return errno.errorcode.get(code, str(code))


class translate_disk_errors(contextlib.ContextDecorator):
    """Turn a lack of space while writing ``path`` into an :class:`~vlarisk.core.errors.OutputError`.

    On such an error this process's temporary files and directories of ``path`` are removed (they
    are incomplete, and they hold the space), then one error naming ``path`` is raised. Other
    errors pass unchanged. Use around a write (``with translate_disk_errors(path): ...``), or see
    :func:`writes_output` for a function whose argument names the output.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __enter__(self) -> translate_disk_errors:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, OutputError) or not isinstance(exc, Exception):
            return False
        found = no_space_reason(exc)
        if found is None:
            return False
        code, reason = found
        remove_own_partials(self.path)
        if code is None:  # torch's message carries no errno: the free space tells what happened
            reason += f" ({_free_space(self.path)})"
        raise OutputError(
            self.path, code, f"cannot write: {reason}; nothing was kept. Free space or raise the quota, then run the same command again"
        ) from exc


def writes_output(argument: str) -> Callable[[Callable], Callable]:
    """Decorator: the function writes the output named by its argument ``argument``; a lack of space
    while it runs becomes an :class:`~vlarisk.core.errors.OutputError` naming that output (see
    :class:`translate_disk_errors`)."""

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            path = signature.bind(*args, **kwargs).arguments[argument]
            with translate_disk_errors(path):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def _free_space(path: Path) -> str:
    """``"12.0 KiB free on <mount>"``-like note on the file system of ``path`` (its nearest existing parent)."""
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return "free space unknown"
    return f"{free / 1024:.1f} KiB free in {directory}"


def remove_own_partials(target: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and directories of ``target`` that this process made; return them.

    For a writer that failed half-way: its temporary output is incomplete and must not hold the
    space until the process ends.
    """
    target = Path(target)
    prefix = f".{target.name}.{os.getpid()}@{_host()}."
    removed = []
    if not target.parent.is_dir():
        return removed
    for candidate in target.parent.iterdir():
        if not (candidate.name.startswith(prefix) and PARTIAL_SUFFIX in candidate.name):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def remove_stale_partials(target: str | os.PathLike) -> list[Path]:
    """Delete temporary files of ``target`` left by writers that no longer run; return them.

    A file of this host is stale when its process is gone; one of another host (a shared file
    system) when it is older than :data:`FOREIGN_PARTIAL_MAX_AGE_S`.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)@(.+)\.[^.]+{re.escape(PARTIAL_SUFFIX)}$")
    removed = []
    if not target.parent.is_dir():
        return removed
    for candidate in target.parent.iterdir():
        match = pattern.match(candidate.name)
        if not match:
            continue
        pid, host = int(match.group(1)), match.group(2)
        try:
            stale = (not _pid_alive(pid)) if host == _host() else time.time() - candidate.stat().st_mtime > FOREIGN_PARTIAL_MAX_AGE_S
            if stale:
                candidate.unlink()
                removed.append(candidate)
        except FileNotFoundError:
            continue  # removed meanwhile by another cleaner
    return removed


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "localhost"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON atomically (stable bytes for stable input)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 24) -> str:
    """Content hash of a file, read in chunks so multi-GB files never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
