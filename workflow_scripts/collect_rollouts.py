#!/usr/bin/env python
"""Collect a physics source (MetaWorld, a behaviour-cloned policy, injected faults): the same as ``vlarisk-collect``."""

from vlarisk.physics.command import cli

if __name__ == "__main__":
    cli()
