"""Shared plumbing of the command-line entry points: logging and plain error reporting.

:func:`run` turns the ways an entry point can end into one clear line and an exit status:

* a bad input (:class:`~vlarisk.core.errors.InputError`) or an unreadable/unwritable file:
  ``error: <file>: <what is wrong>`` on stderr, exit status 2, no traceback;
* an output that cannot be written for lack of space (:class:`~vlarisk.core.errors.OutputError`: a
  full disk, an exceeded quota): ``error: <output>: cannot write: ...`` on stderr, exit status 1;
  the partial file is already gone;
* SIGTERM (a scheduler's cancel, ``kill``) or SIGINT (Ctrl-C): the temporary file being written is
  removed (outputs are only ever renamed into place complete, see :mod:`vlarisk.core.io_utils`), one
  ``interrupted by SIGTERM`` line, exit status 128 + the signal number.

Anything else is a bug and keeps its traceback. ``VLARISK_TRACEBACK=1`` shows tracebacks always.

:class:`ArgumentParser` is the parser of every command: its help keeps the description's line
breaks and shows each option's default.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import threading
from collections.abc import Callable

from vlarisk.core.errors import InputError, OutputError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that keeps the description's line breaks and ends every option's help with its default.

    Left out where a default says nothing: required options, flags (``store_true``), ``None``
    and empty lists, and help that already shows its default. Choices appear as ``{a,b,c}``
    (argparse's own).
    """

    @staticmethod
    def _default_worth_showing(action: argparse.Action) -> bool:
        default = action.default
        return not (
            action.required
            or action.nargs == 0  # store_true, store_false, store_const, help, version
            or default is None
            or default is argparse.SUPPRESS
            or (isinstance(default, (list, tuple)) and not default)
        )

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and self._default_worth_showing(action):  # argparse prints no help line for these
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or not self._default_worth_showing(action):
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter`; its sub-command parsers use it too."""

    def __init__(self, *args, formatter_class: type[argparse.HelpFormatter] = HelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


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
    except OutputError as exc:
        if show_traceback:
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
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
