#!/usr/bin/env python
"""Collect a physics source (MetaWorld, a behaviour-cloned policy, injected faults): the same as ``vlarisk-collect``."""

from vlarisk.cli import run
from vlarisk.collect_command import main

if __name__ == "__main__":
    run(main)
