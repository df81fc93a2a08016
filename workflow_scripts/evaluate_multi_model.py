#!/usr/bin/env python
"""Score a multi-model checkpoint on every source's test split and write ``results.json``.

Each source's split is its data-config entry's ``split_path``, else the one saved in the checkpoint.
"""

import argparse

import torch

from vlarisk.cli import log, run
from vlarisk.device import resolve_device
from vlarisk.evaluation import results_document
from vlarisk.io_utils import write_json
from vlarisk.model import read_checkpoint
from vlarisk.multi_model import evaluate_sources, load_sources, multi_predictor_from_checkpoint, per_source_summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="best_model.pt of train_multi_model.py")
    parser.add_argument("--history", default=None, help="latest.pt whose training history to report (default: the checkpoint's)")
    parser.add_argument("--data-config", required=True, help="JSON listing the datasets (as for training)")
    parser.add_argument("--output", required=True, help="results.json to write")
    parser.add_argument("--positive-fraction", type=float, default=0.5, help="positive threshold as a fraction of the largest training label")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = read_checkpoint(args.checkpoint)
    history = read_checkpoint(args.history)["history"] if args.history else checkpoint["history"]
    device = resolve_device(args.device)
    model = multi_predictor_from_checkpoint(checkpoint, args.checkpoint).to(device)
    sources = load_sources(args.data_config, saved_splits=checkpoint.get("split"))
    report = evaluate_sources(model, sources, device, args.positive_fraction)
    report["best_epoch"] = checkpoint["epoch"]
    document = results_document(checkpoint.get("model_name", ""), report, history, checkpoint["training_config"], float(sum(history["epoch_seconds"])))
    write_json(args.output, document)
    log(f"{args.output}: {per_source_summary(report)}")


if __name__ == "__main__":
    run(main)
