#!/usr/bin/env python
"""Score a trained checkpoint on the test split of a dataset and write ``results.json``."""

import argparse

from vlarisk.cli import log, read_json, run
from vlarisk.cli_args import add_scoring_arguments, checkpoint_and_history, parse_scoring_args
from vlarisk.dataset import load_dataset
from vlarisk.errors import InputError
from vlarisk.evaluation import evaluate, results_document
from vlarisk.io_utils import write_json
from vlarisk.model import predictor_from_checkpoint
from vlarisk.splits import validate_split


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    add_scoring_arguments(parser, output_help="results.json to write")
    parser.add_argument("--data", required=True, help="dataset whose test split to score")
    parser.add_argument("--split", required=True, help="split JSON")
    parser.add_argument("--planting", default=None, help="planting record of synthetic data, to report the planted-direction scorer")
    args = parse_scoring_args(parser, argv)
    checkpoint, history = checkpoint_and_history(args)
    if "sources" in checkpoint:
        raise InputError(f"{args.checkpoint}: is a multi-model checkpoint; score it with evaluate_multi_model.py")
    dataset = load_dataset(args.data)
    split = read_json(args.split)
    validate_split(split, dataset.metadata["rollouts"], args.split)
    predictor = predictor_from_checkpoint(checkpoint, args.checkpoint)
    if predictor.predictor.config["input_dim"] != dataset.hidden_dim:
        raise InputError(
            f"{args.checkpoint}: the model takes {predictor.predictor.config['input_dim']}-D hidden states but {args.data} has "
            f"{dataset.hidden_dim}-D ones (a checkpoint of another model's data?)"
        )
    predictor = predictor.to(args.torch_device)
    report = evaluate(predictor.predictor, predictor.mean, predictor.std, dataset, split, args.torch_device, args.positive_fraction, args.planting, log=log)
    report["best_epoch"] = checkpoint.get("epoch")
    # the guide's checkpoints carry no training_config: reported as empty
    write_json(args.output, results_document(checkpoint.get("model_name", ""), report, history, checkpoint.get("training_config", {})))
    log(f"{args.output}: test mean AUC {report['test_metrics']['mean_auc']}, mean AP {report['test_metrics']['mean_ap']}; logistic baseline mean AUC {report['baselines']['logistic']['mean_auc']}")


if __name__ == "__main__":
    run(main)
