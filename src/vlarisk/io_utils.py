"""Atomic file writing: an output is either complete or absent, never truncated.

Every writer goes through :func:`atomic_path`: the data goes to a hidden temporary file beside the
target (``.<name>.<pid>@<host>.<random>.partial``), which is fsynced and renamed over the target
only when the writing block finished. An exception or a SIGTERM/SIGINT handled by
:func:`vlarisk.cli.run` removes the temporary file; after a SIGKILL or a power cut it stays behind,
is never read by anything, and is deleted by the next write of the same target once its process
is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".partial"
# A temporary file of another host cannot be checked for a live writer; it counts as stale after this.
FOREIGN_PARTIAL_MAX_AGE_S = 24 * 3600


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    target = Path(path)
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
