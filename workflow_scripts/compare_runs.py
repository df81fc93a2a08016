#!/usr/bin/env python
"""Compare runs: one row per results.json, with its experiment, settings, headline test metrics and detection.

The code is :mod:`vlarisk.compare_command`; installed, the same command is ``vlarisk-compare``.
"""

from vlarisk.cli import run
from vlarisk.compare_command import main

if __name__ == "__main__":
    run(main)
