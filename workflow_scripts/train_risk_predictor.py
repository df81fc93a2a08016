#!/usr/bin/env python
"""Train a per-dimension risk predictor on one prepared dataset (the guide's command and flags).

The code is :mod:`vlarisk.train_command`; installed, the same command is ``vlarisk-train``.
"""

from vlarisk.cli import run
from vlarisk.train_command import main

if __name__ == "__main__":
    run(main)
