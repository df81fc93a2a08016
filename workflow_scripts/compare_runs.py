#!/usr/bin/env python
"""Compare runs: one row per results.json, with its experiment, settings, headline test metrics and detection.

The code is :mod:`vlarisk.commands.compare`; installed, the same command is ``vlarisk-compare``.
"""

from vlarisk.commands.compare import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
