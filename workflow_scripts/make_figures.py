#!/usr/bin/env python
"""Draw one paper figure as PNG: ROC/PR curves, training curves, failure detection or an ablation bar chart.

The code is :mod:`vlarisk.commands.figures`.
"""

from vlarisk.commands.figures import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
