"""Split a prepared dataset by rollout (stratified by outcome, seeded) into train, val, calibration
and test; with held-out tasks, test is test_seen (training tasks) plus test_unseen (held-out tasks)."""

from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.core.errors import InputError
from vlarisk.core.io_utils import write_json
from vlarisk.core.settings import SplitSettings, add_arguments, tasks_argument
from vlarisk.data.calibration_counts import calibration_count, count_warning
from vlarisk.data.dataset import load_dataset
from vlarisk.data.splits import calibration_tasks_of, split_rollouts, task_split_seed, unseen_tasks


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="prepared dataset")
    parser.add_argument("--output", required=True, help="the split to write: a JSON file, *.json")
    add_arguments(parser, SplitSettings)
    parser.add_argument(
        "--task-split",
        type=int,
        default=0,
        help="which of several leave-tasks-out splits to draw (0: the plain split; k > 0 draws with a seed derived from --seed and k)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="the alarm level the training command will use: records whether the calibration successes are enough for it",
    )
    args = parser.parse_args(argv)
    if not args.output.endswith(".json"):
        raise InputError(f"--output {args.output}: a split is written as JSON: give a name ending in .json")
    dataset = load_dataset(args.data)
    rollouts = dataset.metadata["rollouts"]
    held_out = tasks_argument(args.held_out_tasks)
    calibrating = tasks_argument(args.calibration_tasks)
    split = split_rollouts(
        rollouts,
        args.val_fraction,
        args.test_fraction,
        args.seed,
        held_out,
        args.data,
        args.calibration_fraction,
        args.unseen_task_fraction,
        calibrating,
        args.task_split,
    )
    split["settings"] = {
        "val_split": args.val_fraction,
        "test_split": args.test_fraction,
        "calibration_split": args.calibration_fraction,
        "seed": args.seed,
        "task_split": args.task_split,
        "task_split_seed": task_split_seed(args.seed, args.task_split),
        "held_out_tasks": held_out,
        "unseen_task_fraction": args.unseen_task_fraction,
        "unseen_tasks": unseen_tasks(split, rollouts),
        "calibration_tasks": calibration_tasks_of(split, rollouts),
        "dataset_sha256": dataset.content_hash,
    }
    fitted_on = "calibration" if "calibration" in split else "val"  # the training command's fallback
    succeeded = {r["rollout_id"] for r in rollouts if r["success"]}
    successes = len(succeeded.intersection(split[fitted_on]))
    if args.alpha is not None:
        split["calibration_count"] = calibration_count(successes, args.alpha, fitted_on)
        warning = count_warning(args.output, split["calibration_count"])
        if warning:
            log(f"warning: {warning}")
    write_json(args.output, split)
    names = [name for name in ("train", "val", "calibration", "unused", "test", "test_seen", "test_unseen") if name in split]
    log(
        f"{args.output}: "
        + ", ".join(f"{name} {len(split[name])} rollouts" for name in names)
        + f"; unseen tasks {split['settings']['unseen_tasks']}, calibration tasks {split['settings']['calibration_tasks']}"
        + f"; the alarm is fitted on {successes} {fitted_on} successes"
        + (f" ({split['calibration_count']['needed']} needed at alpha {args.alpha})" if args.alpha is not None else "")
    )


def cli() -> None:
    """Console entry point ``vlarisk-split``: :func:`main` with plain error reporting (:func:`vlarisk.core.cli.run`)."""
    run(main)
