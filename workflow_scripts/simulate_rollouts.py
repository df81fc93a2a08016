#!/usr/bin/env python
"""Write synthetic success/failure rollout pickles with a planted risk signal (the embedded default).

The code is :mod:`vlarisk.simulate_command`; installed, the same command is ``vlarisk-simulate``.
"""

from vlarisk.cli import run
from vlarisk.simulate_command import main

if __name__ == "__main__":
    run(main)
