#!/usr/bin/env python
"""Train one risk predictor on several sources (VLA models) listed in a data config.

The data config is the guide's ``{"datasets": [{"model_name", "data_path", "description"?}]}``,
optionally with ``split_path`` and ``planting_path`` per entry. Writes ``best_model.pt`` and
``latest.pt`` in ``--output-dir``, and ``results.json`` (pooled and per-source test metrics)
unless ``--no-test``.
"""

import argparse
from dataclasses import asdict
from pathlib import Path

from vlarisk.cli import log, run
from vlarisk.cli_args import add_training_arguments, fit_trainer, parse_training_args
from vlarisk.evaluation import results_document
from vlarisk.io_utils import write_json
from vlarisk.multi_model import MultiTrainer, evaluate_sources, load_sources, per_source_summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-config", required=True, help="JSON listing the datasets to train on together")
    add_training_arguments(parser)
    return parse_training_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    config = args.config
    sources = load_sources(args.data_config, args.val_split, args.test_split, args.seed)
    trainer = MultiTrainer(sources, config, args.output_dir, args.model_name, log=log)
    outcome = fit_trainer(trainer, args)
    if args.no_test:
        return
    report = evaluate_sources(outcome.model, sources, outcome.device, args.positive_fraction)
    report["best_epoch"] = outcome.best_epoch
    document = results_document(args.model_name, report, outcome.history, asdict(config), outcome.wall_seconds)
    write_json(Path(args.output_dir) / "results.json", document)
    log(per_source_summary(report))


if __name__ == "__main__":
    run(main)
