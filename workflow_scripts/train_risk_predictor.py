#!/usr/bin/env python
"""Train a per-dimension risk predictor on one prepared dataset (the guide's command and flags).

The code is :mod:`vlarisk.commands.train`; installed, the same command is ``vlarisk-train``.
"""

from vlarisk.commands.train import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
