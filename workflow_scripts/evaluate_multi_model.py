#!/usr/bin/env python
"""Score a multi-model checkpoint on every source's test split and write ``results.json``.

The code is :mod:`vlarisk.commands.evaluate_multi`.
"""

from vlarisk.commands.evaluate_multi import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
