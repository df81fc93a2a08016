"""Check a source's rollout files without preparing them: counts per outcome and task, hidden size,
label coverage, and whether failure detection gets an alarm threshold and unseen tasks from them.

The ``vlarisk-check`` command. It reads and validates the files as ``vlarisk-prepare`` does (the same
errors) and writes nothing; the split is the pipeline's default unless the options change it.
The rollout format: docs/rollout-format.md.
"""

from vlarisk.core.cli import ArgumentParser, run
from vlarisk.core.settings import SplitSettings, add_arguments
from vlarisk.workflow.check import CHECKED_ALPHAS, check_rollouts, detection_outlook, report_lines


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--success", required=True, help="success_rollouts.pkl")
    parser.add_argument("--failure", required=True, help="failure_rollouts.pkl")
    parser.add_argument("--alpha", type=float, nargs="+", default=list(CHECKED_ALPHAS), help="alarm levels to check")
    add_arguments(parser, SplitSettings, ("calibration_fraction", "seed", "unseen_task_fraction"))
    args = parser.parse_args(argv)
    check = check_rollouts(args.success, args.failure)
    outlook = detection_outlook(
        check,
        alphas=args.alpha,
        seed=args.seed,
        calibration_fraction=args.calibration_fraction,
        unseen_task_fraction=args.unseen_task_fraction,
    )
    print("\n".join(report_lines(check, outlook)))


def cli() -> None:
    """Console entry point ``vlarisk-check``: :func:`main` with plain error reporting (:func:`vlarisk.core.cli.run`)."""
    run(main)
