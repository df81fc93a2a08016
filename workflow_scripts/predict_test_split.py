#!/usr/bin/env python
"""Save a trained model's predictions on its test split (for curves and failure-rate tables)."""

import argparse

import torch

from vlarisk.cli import log, read_json, run
from vlarisk.predictions import predict_test_split, save_predictions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="best_model.pt")
    parser.add_argument("--data", required=True, help="dataset whose test split to score")
    parser.add_argument("--split", required=True, help="split JSON")
    parser.add_argument("--output", required=True, help=".npz to write")
    parser.add_argument("--positive-fraction", type=float, default=0.5, help="positive threshold as a fraction of the largest training label")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arrays = predict_test_split(args.checkpoint, args.data, read_json(args.split), args.positive_fraction)
    save_predictions(args.output, arrays)
    log(f"{args.output}: {len(arrays['prediction'])} test steps")


if __name__ == "__main__":
    run(main)
