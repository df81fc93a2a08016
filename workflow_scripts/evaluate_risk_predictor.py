#!/usr/bin/env python
"""Score a trained checkpoint on the test split of a dataset and write ``results.json``."""

import argparse

import torch

from vlarisk.cli import log, read_json, run
from vlarisk.dataset import load_dataset
from vlarisk.errors import InputError
from vlarisk.device import resolve_device
from vlarisk.evaluation import evaluate, results_document
from vlarisk.io_utils import write_json
from vlarisk.model import predictor_from_checkpoint, read_checkpoint
from vlarisk.splits import validate_split


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="best_model.pt")
    parser.add_argument("--history", default=None, help="latest.pt whose training history to report (default: the checkpoint's)")
    parser.add_argument("--data", required=True, help="dataset whose test split to score")
    parser.add_argument("--split", required=True, help="split JSON")
    parser.add_argument("--output", required=True, help="results.json to write")
    parser.add_argument("--planting", default=None, help="planting record of synthetic data, to report the oracle")
    parser.add_argument("--positive-fraction", type=float, default=0.5, help="positive threshold as a fraction of the largest training label")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = read_checkpoint(args.checkpoint)
    if "sources" in checkpoint:
        raise InputError(f"{args.checkpoint}: is a multi-model checkpoint; score it with evaluate_multi_model.py")
    # the guide's checkpoints carry no history or training_config: report them as empty
    history = (read_checkpoint(args.history) if args.history else checkpoint).get("history") or {}
    dataset = load_dataset(args.data)
    split = read_json(args.split)
    validate_split(split, dataset.metadata["rollouts"], args.split)
    predictor = predictor_from_checkpoint(checkpoint, args.checkpoint)
    if predictor.predictor.config["input_dim"] != dataset.hidden_dim:
        raise InputError(
            f"{args.checkpoint}: the model takes {predictor.predictor.config['input_dim']}-D hidden states but {args.data} has "
            f"{dataset.hidden_dim}-D ones (a checkpoint of another model's data?)"
        )
    predictor = predictor.to(device)
    report = evaluate(predictor.predictor, predictor.mean, predictor.std, dataset, split, device, args.positive_fraction, args.planting)
    report["best_epoch"] = checkpoint.get("epoch")
    seconds = history.get("epoch_seconds")
    document = results_document(checkpoint.get("model_name", ""), report, history, checkpoint.get("training_config", {}), float(sum(seconds)) if seconds else None)
    write_json(args.output, document)
    log(f"{args.output}: test mean AUC {report['test_metrics']['mean_auc']}, mean AP {report['test_metrics']['mean_ap']}")


if __name__ == "__main__":
    run(main)
