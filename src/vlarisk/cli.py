"""Shared plumbing of the command-line entry points: logging and plain error reporting."""

from __future__ import annotations

import json
import sys
from typing import Callable

from vlarisk.errors import InputError


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run an entry point; a bad input ends with one clear line on stderr and exit status 2."""
    try:
        main(argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
