#!/usr/bin/env python
"""Score a trained checkpoint on the test split of a dataset and write ``results.json``.

The code is :mod:`vlarisk.commands.evaluate`; installed, the same command is ``vlarisk-evaluate``.
"""

from vlarisk.commands.evaluate import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
