"""Train every seed of one ablation cell in one process: ``--seeds S ... -- TRAINING ARGUMENTS``.

Each seed runs the training command (:mod:`vlarisk.commands.train`) with ``{seed}`` in the
arguments replaced by the seed (:mod:`vlarisk.commands.per_seed`).
"""

from vlarisk.commands import train
from vlarisk.commands.per_seed import run_per_seed


def main(argv=None):
    run_per_seed(train.main, argv, __doc__)
