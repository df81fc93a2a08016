#!/usr/bin/env python
"""The paper's attribution table (md/tex/csv/html/json) and figure (PNG) from collected sources' results.json.

The code is :mod:`vlarisk.commands.attribution`.
"""

from vlarisk.commands.attribution import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
