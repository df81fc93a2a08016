#!/usr/bin/env python
"""Train one risk predictor on several sources (VLA models) listed in a data config.

The code is :mod:`vlarisk.commands.train_multi`; installed, the same command is ``vlarisk-train-multi``.
"""

from vlarisk.commands.train_multi import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
