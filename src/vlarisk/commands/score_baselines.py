"""Fit a source's baselines on its split once and write their scores, metrics and detection blocks.

Every model scored on this dataset, split, label cut-offs and detection options reads the file
(``--baselines`` of the evaluation commands) instead of fitting the same baselines again.
"""

from vlarisk.commands.cli_args import THREADS_HELP, limit_threads
from vlarisk.core.cli import ArgumentParser, log
from vlarisk.core.settings import TrainingConfig, add_arguments
from vlarisk.score.detection_flags import add_detection_arguments, detection_options


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="the source's name, by which a multi-model's scoring finds its file")
    parser.add_argument("--data", required=True, help="dataset whose test split the baselines score")
    parser.add_argument("--split", required=True, help="split JSON (the baselines are fitted on its training rollouts)")
    parser.add_argument("--planting", default=None, help="planting record of synthetic data, to add the planted-direction scorer")
    parser.add_argument("--output", required=True, help="baselines .json to write (the scores go to the .npz beside it)")
    add_arguments(parser, TrainingConfig, ("positive_fraction_of_max",))
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    add_detection_arguments(parser)
    args = parser.parse_args(argv)  # before numpy's heavy users load: --help and usage errors come at once
    limit_threads(args.threads)
    from vlarisk.score.source_baselines import fit_source_baselines, write_source_baselines
    from vlarisk.train.sources import open_source

    source = open_source(args.source, args.data, args.split, args.planting)
    baselines = fit_source_baselines(source, "test", source.label_cutoffs(args.positive_fraction_of_max), detection_options(args))
    write_source_baselines(args.output, baselines)
    logistic = baselines.metrics["logistic"]["mean_auc"]
    log(f"{args.output}: {', '.join(baselines.scores)} on {baselines.n_scored} test rows; logistic baseline mean AUC {logistic}")
