#!/usr/bin/env python
"""Write one paper table (Markdown, LaTeX, CSV, HTML and a JSON sidecar) from results files.

The code is :mod:`vlarisk.commands.tables`.
"""

from vlarisk.commands.tables import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
