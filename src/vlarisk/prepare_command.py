"""Prepare a training dataset from success and failure rollout pickles.

The output is a memory-mappable ``.vlarisk`` file, or the guide's pickle layout when the path ends
in ``.pkl``. Steps keep their rollout, task and step ids so the data can be split by rollout.

The ``vlarisk-prepare`` command; ``python workflow_scripts/prepare_training_data.py`` runs the same.
"""

import json

from vlarisk.cli import ArgumentParser, log, run
from vlarisk.prepare import prepare_dataset


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--success", required=True, help="success_rollouts.pkl")
    parser.add_argument("--failure", required=True, help="failure_rollouts.pkl")
    parser.add_argument("--output", required=True, help="dataset path (.vlarisk, or .pkl for the guide's layout)")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        "--require-labels", action="store_true", help="drop steps without per_dim_risk instead of labelling them heuristically"
    )
    labels.add_argument("--heuristic-labels", action="store_true", help="ignore per_dim_risk and label every step by the heuristic")
    args = parser.parse_args(argv)
    labelling = "require" if args.require_labels else "heuristic" if args.heuristic_labels else "auto"
    metadata = prepare_dataset(args.success, args.failure, args.output, labelling=labelling)
    summary = {k: v for k, v in metadata.items() if k not in ("rollouts", "task_names")}
    log(f"wrote {args.output}: {json.dumps(summary, sort_keys=True)}")


def cli() -> None:
    """Console entry point ``vlarisk-prepare``: :func:`main` with plain error reporting (:func:`vlarisk.cli.run`)."""
    run(main)
