#!/usr/bin/env python
"""Check that two datasets of one source hold the same rollouts under the same ids.

The code is :mod:`vlarisk.commands.same_rollouts`.
"""

from vlarisk.commands.same_rollouts import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
