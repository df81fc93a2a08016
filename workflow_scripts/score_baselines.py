#!/usr/bin/env python
"""Fit a source's baselines on its split once, for every model scored on that split.

The code is :mod:`vlarisk.commands.score_baselines`.
"""

from vlarisk.commands.score_baselines import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
