#!/usr/bin/env python
"""Save a trained model's predictions on its test split (for curves and failure-rate tables)."""

import argparse

from vlarisk.cli import log, read_json, run
from vlarisk.cli_args import add_scoring_arguments, parse_scoring_args
from vlarisk.predictions import predict_test_split, save_predictions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    add_scoring_arguments(parser, output_help=".npz to write", history=False)
    parser.add_argument("--data", required=True, help="dataset whose test split to score")
    parser.add_argument("--split", required=True, help="split JSON")
    args = parse_scoring_args(parser, argv)
    arrays = predict_test_split(args.checkpoint, args.data, read_json(args.split), args.positive_fraction, args.torch_device)
    save_predictions(args.output, arrays)
    log(f"{args.output}: {len(arrays['prediction'])} test steps")


if __name__ == "__main__":
    run(main)
