#!/usr/bin/env python
"""Prepare a training dataset from success and failure rollout pickles.

The code is :mod:`vlarisk.commands.prepare`; installed, the same command is ``vlarisk-prepare``.
"""

from vlarisk.commands.prepare import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
