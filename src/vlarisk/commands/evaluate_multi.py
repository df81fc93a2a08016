"""Score a multi-model checkpoint on every source's test split and write ``results.json``.

Each source's split is its data-config entry's ``split_path``, else the one saved in the checkpoint.
"""

from vlarisk.commands.cli_args import BASELINES_HELP, add_scoring_arguments, checkpoint_and_history, parse_scoring_args
from vlarisk.core.cli import ArgumentParser, log
from vlarisk.score.detection_flags import add_detection_arguments, detection_options


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    add_scoring_arguments(parser, output_help="results.json to write")
    parser.add_argument("--data-config", required=True, help="JSON listing the datasets (as for training)")
    parser.add_argument("--baselines", nargs="+", default=[], help=f"{BASELINES_HELP}; one file per source, each naming its source")
    add_detection_arguments(parser)
    args = parse_scoring_args(parser, argv)
    # torch, scikit-learn and the scoring code load after parsing: --help and usage errors come at once
    from vlarisk.model.checkpoints import multi_predictor_from_checkpoint
    from vlarisk.score.evaluation import checkpoint_label_cutoffs, evaluate_sources, per_source_summary, write_results
    from vlarisk.score.source_baselines import checked_baselines_by_source
    from vlarisk.train.sources import load_sources

    checkpoint, history = checkpoint_and_history(args)
    model = multi_predictor_from_checkpoint(checkpoint, args.checkpoint).to(args.torch_device)
    sources = load_sources(args.data_config, saved_splits=checkpoint.get("split"))
    label_cutoffs = {source.name: checkpoint_label_cutoffs(checkpoint, source, args.positive_fraction_of_max, log) for source in sources}
    options = detection_options(args)
    baselines = checked_baselines_by_source(args.baselines, sources, label_cutoffs, options)
    report = evaluate_sources(model, sources, label_cutoffs, args.torch_device, log=log, options=options, baselines=baselines)
    report["best_epoch"] = checkpoint["epoch"]
    write_results(args.output, checkpoint.get("model_name", ""), report, history, checkpoint["training_config"])
    log(f"{args.output}: {per_source_summary(report)}")
