#!/usr/bin/env python
"""Prepare a training dataset from success and failure rollout pickles.

The code is :mod:`vlarisk.prepare_command`; installed, the same command is ``vlarisk-prepare``.
"""

from vlarisk.cli import run
from vlarisk.prepare_command import main

if __name__ == "__main__":
    run(main)
