#!/usr/bin/env python
"""Collect a physics source (MetaWorld, a behaviour-cloned policy, injected faults): the same as ``vlarisk-collect``."""

from vlarisk.commands.collect import main
from vlarisk.core.cli import run

if __name__ == "__main__":
    run(main)
