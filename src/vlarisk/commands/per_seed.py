"""Run one command once per seed, in one process: an ablation cell's seeds trained (or scored) together.

A cell's seeds differ only in their seed and their paths. Each run is the single-run command itself
(``vlarisk-train``, ``vlarisk-evaluate``) with ``{seed}`` in its arguments replaced by the seed, so
it writes exactly the files a run of its own would; only the command's start-up (Python, torch,
scikit-learn, the dataset) is paid once per cell instead of once per seed.
"""

from __future__ import annotations

from collections.abc import Callable

from vlarisk.core.cli import ArgumentParser, log

SEED_FIELD = "{seed}"


def seed_arguments(arguments: list[str], seed: int) -> list[str]:
    """``arguments`` with every ``{seed}`` replaced by ``seed``."""
    return [argument.replace(SEED_FIELD, str(seed)) for argument in arguments]


def run_per_seed(main: Callable[[list[str]], None], argv: list[str] | None = None, description: str | None = None) -> None:
    """Parse ``--seeds S [S ...] -- ARGUMENTS`` and call ``main`` with each seed's arguments, in order.

    A failing seed ends the whole run (its error, as the command alone would report it): the
    workflow then reruns the cell, and a training seed resumes from its own ``--resume-dir``.
    """
    parser = ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="the seeds to run, one after another")
    parser.add_argument("arguments", nargs="+", help=f"the command's arguments after `--`; {SEED_FIELD} stands for the seed")
    args = parser.parse_args(argv)
    if not any(SEED_FIELD in argument for argument in args.arguments):
        parser.error(f"no argument holds {SEED_FIELD}: every seed would write the same files")
    for seed in args.seeds:
        log(f"=== seed {seed} ===")
        main(seed_arguments(args.arguments, seed))
