#!/usr/bin/env python
"""Write synthetic success/failure rollout pickles with a planted risk signal (the embedded default).

The code is :mod:`vlarisk.commands.simulate`; installed, the same command is ``vlarisk-simulate``.
"""

from vlarisk.commands.simulate import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
