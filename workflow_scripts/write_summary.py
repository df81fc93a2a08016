#!/usr/bin/env python
"""Write the run's verdict, one row per model (per source of a multi-model), as Markdown, and print it.

The code is :mod:`vlarisk.commands.summary`.
"""

from vlarisk.commands.summary import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
