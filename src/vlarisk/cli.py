"""Shared plumbing of the command-line entry points: logging and plain error reporting.

:func:`run` turns the ways an entry point can end into one clear line and an exit status:

* a bad input (:class:`~vlarisk.errors.InputError`) or an unreadable/unwritable file:
  ``error: <file>: <what is wrong>`` on stderr, exit status 2, no traceback;
* SIGTERM (a scheduler's cancel, ``kill``) or SIGINT (Ctrl-C): the temporary file being written is
  removed (outputs are only ever renamed into place complete, see :mod:`vlarisk.io_utils`), one
  ``interrupted by SIGTERM`` line, exit status 128 + the signal number.

Anything else is a bug and keeps its traceback. ``VLARISK_TRACEBACK=1`` shows tracebacks always.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable

from vlarisk.errors import InputError


class Interrupted(BaseException):
    """Raised in the main thread on SIGTERM so that cleanup code (``finally``) runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run an entry point; a bad input ends with one clear line on stderr and exit status 2."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    show_traceback = os.environ.get("VLARISK_TRACEBACK", "") not in ("", "0")
    try:
        main(argv)
    except InputError as exc:
        if show_traceback:
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        if exc.filename is None or show_traceback:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(
            f"interrupted by {signal.Signals(signum).name}: no partial output was kept; run the same command again "
            "(train_risk_predictor.py --resume continues from latest.pt)",
            file=sys.stderr,
        )
        raise SystemExit(128 + signum) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def log(message: str) -> None:
    """Progress line on stdout, flushed so a person watching a log file sees it at once."""
    print(message, flush=True)


def read_json(path: str) -> dict:
    """Read a JSON file, turning a missing or malformed file into an :class:`InputError`."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
