#!/usr/bin/env python
"""Score a trained checkpoint on the test split of a dataset and write ``results.json``.

The code is :mod:`vlarisk.evaluate_command`; installed, the same command is ``vlarisk-evaluate``.
"""

from vlarisk.cli import run
from vlarisk.evaluate_command import main

if __name__ == "__main__":
    run(main)
