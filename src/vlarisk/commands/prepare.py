"""Prepare a training dataset from success and failure rollout pickles.

The output is a memory-mappable dataset folder (a name ending in ``.vlarisk``), or the guide's
pickle layout when the name ends in ``.pkl``. Steps keep their rollout, task and step ids so the data can be split by rollout.

The ``vlarisk-prepare`` command; ``python workflow_scripts/prepare_training_data.py`` runs the same.
"""

import json
from pathlib import Path

from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.core.errors import InputError
from vlarisk.data.prepare import prepare_dataset

# What --output's name says is written: the project's dataset folder, or the guide's pickle file.
OUTPUT_FORMS = {".vlarisk": "a dataset folder", ".pkl": "the guide's pickle file"}


def checked_output(path: str) -> str:
    """``path`` when its suffix names a form that is written; else an error saying which forms exist."""
    if Path(path).suffix not in OUTPUT_FORMS:
        forms = "; ".join(f"{suffix}: {form}" for suffix, form in OUTPUT_FORMS.items())
        raise InputError(f"--output {path}: the name must end in the form to write ({forms})")
    return path


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--success", required=True, help="success_rollouts.pkl")
    parser.add_argument("--failure", required=True, help="failure_rollouts.pkl")
    parser.add_argument("--output", required=True, help="the dataset to write: a folder named *.vlarisk, or *.pkl for the guide's pickle")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        "--require-labels", action="store_true", help="drop steps without per_dim_risk instead of labelling them heuristically"
    )
    labels.add_argument("--heuristic-labels", action="store_true", help="ignore per_dim_risk and label every step by the heuristic")
    args = parser.parse_args(argv)
    labelling = "require" if args.require_labels else "heuristic" if args.heuristic_labels else "auto"
    metadata = prepare_dataset(args.success, args.failure, checked_output(args.output), labelling=labelling)
    summary = {k: v for k, v in metadata.items() if k not in ("rollouts", "task_names")}
    log(f"wrote {args.output}: {json.dumps(summary, sort_keys=True)}")


def cli() -> None:
    """Console entry point ``vlarisk-prepare``: :func:`main` with plain error reporting (:func:`vlarisk.core.cli.run`)."""
    run(main)
