#!/usr/bin/env python
"""Split a prepared dataset into train/val/test by rollout (stratified by outcome, seeded)."""

import argparse

from vlarisk.cli import log, run
from vlarisk.dataset import load_dataset
from vlarisk.io_utils import write_json
from vlarisk.splits import split_rollouts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="prepared dataset")
    parser.add_argument("--output", required=True, help="split JSON to write")
    parser.add_argument("--val-split", type=float, default=0.2)
    parser.add_argument("--test-split", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out-tasks", nargs="*", default=[], help="tasks whose rollouts form the test set")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data)
    split = split_rollouts(dataset.metadata["rollouts"], args.val_split, args.test_split, args.seed, args.held_out_tasks, source=args.data)
    split["settings"] = {
        "val_split": args.val_split,
        "test_split": args.test_split,
        "seed": args.seed,
        "held_out_tasks": args.held_out_tasks,
        "dataset_sha256": dataset.content_hash,
    }
    write_json(args.output, split)
    log(f"{args.output}: " + ", ".join(f"{name} {len(split[name])} rollouts" for name in ("train", "val", "test")))


if __name__ == "__main__":
    run(main)
