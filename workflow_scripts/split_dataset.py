#!/usr/bin/env python
"""Split a prepared dataset by rollout (stratified by outcome, seeded) into train, val, calibration
and test; with held-out tasks, test is test_seen (training tasks) plus test_unseen (held-out tasks).

The code is :mod:`vlarisk.commands.split`; installed, the same command is ``vlarisk-split``.
"""

from vlarisk.commands.split import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
