#!/usr/bin/env python
"""Score every seed of one ablation cell in one process.

The code is :mod:`vlarisk.commands.evaluate_ablation_cell`.
"""

from vlarisk.commands.evaluate_ablation_cell import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
