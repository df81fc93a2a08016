"""Score a trained checkpoint on the test split of a dataset and write ``results.json``.

With ``--predictions``, the scored test steps are written too (for curves and failure-rate tables).

The ``vlarisk-evaluate`` command; ``python workflow_scripts/evaluate_risk_predictor.py`` runs the same.
"""

import time

from vlarisk.commands.cli_args import BASELINES_HELP, add_scoring_arguments, checkpoint_and_history, parse_scoring_args
from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.core.errors import InputError
from vlarisk.data.documents import BASELINES, DETECTION, SOURCES, TEST_METRICS, read_results
from vlarisk.score.detection_flags import add_detection_arguments, detection_options


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    add_scoring_arguments(parser, output_help="results.json to write")
    parser.add_argument("--data", required=True, help="dataset whose test split to score")
    parser.add_argument("--split", required=True, help="split JSON")
    parser.add_argument("--planting", default=None, help="planting record of synthetic data, to report the planted-direction scorer")
    parser.add_argument("--predictions", default=None, help="test predictions (.npz) to write as well")
    parser.add_argument(
        "--task-split-results",
        nargs="+",
        default=[],
        help="results.json of the source's other task splits (1, 2, ...): detection gains per-split values with mean and SD",
    )
    parser.add_argument("--baselines", default=None, help=BASELINES_HELP)
    add_detection_arguments(parser)
    args = parse_scoring_args(parser, argv)
    # torch, scikit-learn and the scoring code load after parsing: --help and usage errors come at once
    from vlarisk.data.task_splits import add_task_splits
    from vlarisk.model.checkpoints import predictor_from_checkpoint
    from vlarisk.score.evaluation import checkpoint_label_cutoffs, score_source, single_source_report, write_results
    from vlarisk.score.predictions import prediction_arrays, save_predictions
    from vlarisk.score.source_baselines import checked_source_baselines
    from vlarisk.train.sources import open_source

    checkpoint, history = checkpoint_and_history(args)
    if SOURCES in checkpoint:
        raise InputError(f"{args.checkpoint}: is a multi-model checkpoint; score it with evaluate_multi_model.py")
    source = open_source(checkpoint.get("model_name", ""), args.data, args.split, args.planting)
    predictor = predictor_from_checkpoint(checkpoint, args.checkpoint)
    if predictor.predictor.config["input_dim"] != source.dataset.hidden_dim:
        raise InputError(
            f"{args.checkpoint}: the model takes {predictor.predictor.config['input_dim']}-D hidden states but {args.data} has "
            f"{source.dataset.hidden_dim}-D ones (a checkpoint of another model's data?)"
        )
    started = time.perf_counter()
    label_cutoffs = checkpoint_label_cutoffs(checkpoint, source, args.positive_fraction_of_max, log)
    options = detection_options(args)
    baselines = checked_source_baselines(args.baselines, source, "test", label_cutoffs, options) if args.baselines else None
    scored = score_source(predictor.to(args.torch_device), source, label_cutoffs, args.torch_device)
    report = single_source_report(scored, args.torch_device, started, options, log, baselines)
    report["best_epoch"] = checkpoint.get("epoch")
    if args.task_split_results:
        others = [read_results(path) for path in args.task_split_results]
        add_task_splits(report[DETECTION], others, [args.output, *args.task_split_results])
    if args.predictions:
        save_predictions(args.predictions, prediction_arrays(scored, args.checkpoint, args.positive_fraction_of_max))
    # the guide's checkpoints carry no training_config: reported as empty
    write_results(args.output, checkpoint.get("model_name", ""), report, history, checkpoint.get("training_config", {}))
    log(
        f"{args.output}: test mean AUC {report[TEST_METRICS]['mean_auc']}, mean AP {report[TEST_METRICS]['mean_ap']}; logistic baseline mean AUC {report[BASELINES]['logistic']['mean_auc']}"
    )


def cli() -> None:
    """Console entry point ``vlarisk-evaluate``: :func:`main` with plain error reporting (:func:`vlarisk.core.cli.run`)."""
    run(main)
