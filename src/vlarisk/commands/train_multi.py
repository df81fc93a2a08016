"""Train one risk predictor on several sources (VLA models) listed in a data config.

The data config is the guide's ``{"datasets": [{"model_name", "data_path", "description"?}]}``,
optionally with ``split_path`` and ``planting_path`` per entry. Writes ``best_model.pt`` and
``latest.pt`` in ``--output-dir``, and ``results.json`` (pooled and per-source test metrics)
unless ``--no-test``.

The ``vlarisk-train-multi`` command; ``python workflow_scripts/train_multi_model.py`` runs the same.
"""

from dataclasses import asdict
from pathlib import Path

from vlarisk.commands.cli_args import add_training_arguments, clear_resume_state, fit_trainer, parse_training_args
from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.data.documents import RESULTS_FILE
from vlarisk.score.detection_flags import add_detection_arguments, detection_options


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--data-config", required=True, help="JSON listing the datasets to train on together")
    add_training_arguments(parser)
    add_detection_arguments(parser)
    return parse_training_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    # torch and the training code load after parsing: --help and usage errors come at once
    from vlarisk.train.sources import load_sources
    from vlarisk.train.training import Trainer

    sources = load_sources(args.data_config, args.val_fraction, args.test_fraction, args.seed)
    trainer = Trainer(
        sources,
        args.config,
        args.output_dir,
        args.model_name,
        log=log,
        multi_source=True,
        state_dir=args.resume_dir,
        progress=args.progress,
    )
    outcome = fit_trainer(trainer, args, sources)
    if not args.no_test:
        score_test_splits(args, sources, outcome)
    clear_resume_state(args.resume_dir)


def score_test_splits(args, sources, outcome):
    """Write ``results.json``: pooled and per-source test metrics (the evaluation code is imported
    here, as in train_risk_predictor.py, so that training with ``--no-test`` does not depend on it)."""
    from vlarisk.score.evaluation import evaluate_sources, per_source_summary, write_results  # code inputs: not of training (--no-test)

    report = {
        **evaluate_sources(outcome.model, sources, outcome.label_cutoffs, outcome.device, log=log, options=detection_options(args)),
        "best_epoch": outcome.best_epoch,
    }
    write_results(Path(args.output_dir) / RESULTS_FILE, args.model_name, report, outcome.history, asdict(args.config), outcome.wall_seconds)
    log(per_source_summary(report))


def cli() -> None:
    """Console entry point ``vlarisk-train-multi``: :func:`main` with plain error reporting (:func:`vlarisk.core.cli.run`)."""
    run(main)
