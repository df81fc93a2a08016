#!/usr/bin/env python
"""Train a per-dimension risk predictor on one prepared dataset (the guide's command and flags).

Writes ``best_model.pt`` and ``latest.pt`` in ``--output-dir``, and ``results.json`` with the test
metrics unless ``--no-test`` (the pipeline scores the test split in its own rule).
"""

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from vlarisk.cli import log, read_json, run
from vlarisk.dataset import load_dataset
from vlarisk.evaluation import evaluate, results_document
from vlarisk.io_utils import write_json
from vlarisk.splits import split_rollouts, validate_split
from vlarisk.training import LOSS_TYPES, Trainer, TrainingConfig


def parse_args(argv=None):
    defaults = TrainingConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="prepared dataset (.vlarisk or .pkl)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--model-name", default=None, help="name recorded in results (default: the output dir's name)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--hidden-dims", type=int, nargs="*", default=defaults.hidden_dims, help="hidden layer widths; none gives a linear probe")
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--activation", default=defaults.activation)
    parser.add_argument("--loss-type", choices=LOSS_TYPES, default=defaults.loss_type)
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True, help="standardise inputs with training-split statistics (default on)")
    parser.add_argument("--val-split", type=float, default=0.2)
    parser.add_argument("--test-split", type=float, default=0.1)
    parser.add_argument("--split", default=None, help="split JSON from split_dataset.py (overrides --val-split/--test-split)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward pass")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--positive-fraction", type=float, default=defaults.positive_fraction_of_max, help="positive threshold as a fraction of the largest training label")
    parser.add_argument("--planting", default=None, help="planting record of synthetic data, to report the oracle")
    parser.add_argument("--resume", action="store_true", help="continue from latest.pt in --output-dir")
    parser.add_argument("--no-test", action="store_true", help="skip scoring the test split and writing results.json")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, hidden_dims=args.hidden_dims,
        dropout=args.dropout, activation=args.activation, loss_type=args.loss_type, normalize=args.normalize, seed=args.seed,
        device=args.device, bf16=args.bf16, positive_fraction_of_max=args.positive_fraction,
    )
    dataset = load_dataset(args.data)
    if args.split:
        split = read_json(args.split)
        validate_split(split, dataset.metadata["rollouts"], args.split)
    else:
        split = split_rollouts(dataset.metadata["rollouts"], args.val_split, args.test_split, args.seed, source=args.data)
    model_name = args.model_name or Path(args.output_dir).name
    trainer = Trainer(dataset, split, config, args.output_dir, model_name, log=log)
    if args.resume:
        trainer.resume()
    outcome = trainer.fit()
    log(f"best epoch {outcome.best_epoch}; training took {outcome.wall_seconds:.1f}s")
    if args.no_test:
        return
    report = evaluate(outcome.model, outcome.mean, outcome.std, dataset, split, outcome.device, args.positive_fraction, args.planting)
    document = results_document(model_name, report, outcome.history, asdict(config), outcome.wall_seconds)
    write_json(Path(args.output_dir) / "results.json", document)
    log(f"test mean AUC {report['test_metrics']['mean_auc']}, mean AP {report['test_metrics']['mean_ap']}")


if __name__ == "__main__":
    run(main)
