#!/usr/bin/env python
"""Train one risk predictor on several sources (VLA models) listed in a data config.

The code is :mod:`vlarisk.train_multi_command`; installed, the same command is ``vlarisk-train-multi``.
"""

from vlarisk.cli import run
from vlarisk.train_multi_command import main

if __name__ == "__main__":
    run(main)
