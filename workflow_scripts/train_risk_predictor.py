#!/usr/bin/env python
"""Train a per-dimension risk predictor on one prepared dataset (the guide's command and flags).

Writes ``best_model.pt`` and ``latest.pt`` in ``--output-dir``, and ``results.json`` with the test
metrics unless ``--no-test`` (the pipeline scores the test split in its own rule).
"""

import argparse
from dataclasses import asdict
from pathlib import Path

from vlarisk.cli import log, read_json, run
from vlarisk.cli_args import add_training_arguments, fit_trainer, parse_training_args
from vlarisk.dataset import load_dataset
from vlarisk.evaluation import evaluate, results_document
from vlarisk.io_utils import write_json
from vlarisk.splits import split_rollouts, validate_split
from vlarisk.training import Trainer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="prepared dataset (.vlarisk or .pkl)")
    add_training_arguments(parser)
    parser.add_argument("--split", default=None, help="split JSON from split_dataset.py (overrides --val-split/--test-split)")
    parser.add_argument("--planting", default=None, help="planting record of synthetic data, to report the oracle")
    return parse_training_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    config = args.config
    dataset = load_dataset(args.data)
    if args.split:
        split = read_json(args.split)
        validate_split(split, dataset.metadata["rollouts"], args.split)
    else:
        split = split_rollouts(dataset.metadata["rollouts"], args.val_split, args.test_split, args.seed, source=args.data)
    trainer = Trainer(dataset, split, config, args.output_dir, args.model_name, log=log)
    outcome = fit_trainer(trainer, args)
    if args.no_test:
        return
    report = evaluate(outcome.model, outcome.mean, outcome.std, dataset, split, outcome.device, args.positive_fraction, args.planting)
    document = results_document(args.model_name, report, outcome.history, asdict(config), outcome.wall_seconds)
    write_json(Path(args.output_dir) / "results.json", document)
    log(f"test mean AUC {report['test_metrics']['mean_auc']}, mean AP {report['test_metrics']['mean_ap']}")


if __name__ == "__main__":
    run(main)
