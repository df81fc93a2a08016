"""Train a per-dimension risk predictor on one prepared dataset (the guide's command and flags).

Writes ``best_model.pt`` (with the alarm threshold fitted on the calibration rollouts) and
``latest.pt`` in ``--output-dir``, and ``results.json`` with the test metrics and failure detection
unless ``--no-test`` (the pipeline scores the test split in its own rule).

The ``vlarisk-train`` command; ``python workflow_scripts/train_risk_predictor.py`` runs the same.
"""

from dataclasses import asdict
from pathlib import Path

from vlarisk.commands.cli_args import add_training_arguments, clear_resume_state, fit_trainer, parse_training_args
from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.data.documents import BASELINES, RESULTS_FILE, TEST_METRICS
from vlarisk.score.detection_flags import add_detection_arguments, detection_options


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="prepared dataset (.vlarisk or .pkl)")
    add_training_arguments(parser)
    parser.add_argument("--split", default=None, help="split JSON from split_dataset.py (overrides --val-fraction/--test-fraction)")
    parser.add_argument("--planting", default=None, help="planting record of synthetic data, to report the planted-direction scorer")
    add_detection_arguments(parser)
    return parse_training_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    # torch and the training code load after parsing: --help and usage errors come at once
    from vlarisk.train.sources import open_source
    from vlarisk.train.training import Trainer

    source = open_source(
        args.model_name,
        args.data,
        args.split,
        args.planting,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )
    trainer = Trainer([source], args.config, args.output_dir, args.model_name, log=log, state_dir=args.resume_dir, progress=args.progress)
    outcome = fit_trainer(trainer, args, [source])
    if not args.no_test:
        score_test_split(args, source, outcome)
    clear_resume_state(args.resume_dir)


def score_test_split(args, source, outcome):
    """Write ``results.json``: the test metrics with the baselines beside them.

    The evaluation code is imported here, so that the pipeline's training step (``--no-test``)
    does not depend on it: a change to a metric re-runs evaluation only.
    """
    from vlarisk.score.evaluation import evaluate, write_results  # code inputs: not of training (--no-test)

    report = evaluate(outcome.model, source, outcome.label_cutoffs[source.name], outcome.device, log=log, options=detection_options(args))
    write_results(Path(args.output_dir) / RESULTS_FILE, args.model_name, report, outcome.history, asdict(args.config), outcome.wall_seconds)
    log(
        f"test mean AUC {report[TEST_METRICS]['mean_auc']}, mean AP {report[TEST_METRICS]['mean_ap']}; logistic baseline mean AUC {report[BASELINES]['logistic']['mean_auc']}"
    )


def cli() -> None:
    """Console entry point ``vlarisk-train``: :func:`main` with plain error reporting (:func:`vlarisk.core.cli.run`)."""
    run(main)
