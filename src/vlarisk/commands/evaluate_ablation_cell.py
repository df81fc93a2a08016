"""Score every seed of one ablation cell in one process: ``--seeds S ... -- EVALUATION ARGUMENTS``.

Each seed runs the scoring command (:mod:`vlarisk.commands.evaluate`) with ``{seed}`` in the
arguments replaced by the seed (:mod:`vlarisk.commands.per_seed`).
"""

from vlarisk.commands import evaluate
from vlarisk.commands.per_seed import run_per_seed


def main(argv=None):
    run_per_seed(evaluate.main, argv, __doc__)
