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
from vlarisk.io_utils import write_json
from vlarisk.splits import split_rollouts, validate_split
from vlarisk.training import Trainer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="prepared dataset (.vlarisk or .pkl)")
    add_training_arguments(parser)
    parser.add_argument("--split", default=None, help="split JSON from split_dataset.py (overrides --val-split/--test-split)")
    parser.add_argument("--planting", default=None, help="planting record of synthetic data, to report the planted-direction scorer")
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
    if not args.no_test:
        score_test_split(args, dataset, split, outcome)


def score_test_split(args, dataset, split, outcome):
    """Write ``results.json``: the test metrics with the baselines beside them.

    Imported here, so that the pipeline's training step (``--no-test``) does not depend on the
    evaluation code: a change to a metric re-runs evaluation only.
    """
    from vlarisk.evaluation import evaluate, results_document

    config = args.config
    report = evaluate(outcome.model, outcome.mean, outcome.std, dataset, split, outcome.device, args.positive_fraction, args.planting, log=log)
    document = results_document(args.model_name, report, outcome.history, asdict(config), outcome.wall_seconds)
    write_json(Path(args.output_dir) / "results.json", document)
    log(f"test mean AUC {report['test_metrics']['mean_auc']}, mean AP {report['test_metrics']['mean_ap']}; logistic baseline mean AUC {report['baselines']['logistic']['mean_auc']}")


if __name__ == "__main__":
    run(main)
