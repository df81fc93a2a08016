"""Command-line flags shared by the training commands, and by the commands that score a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vlarisk.checkpoints import read_checkpoint
from vlarisk.device import resolve_device
from vlarisk.models import RiskPredictor
from vlarisk.settings import TrainingConfig, add_arguments, config_from_args


def add_training_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the training flags to ``parser``: one per :class:`~vlarisk.settings.TrainingConfig` field
    (``--epochs`` ... ``--grad-clip``, ``--positive-fraction``; type, default, help and choices come
    from the field), then the run's own: output, split fractions, threads, resume, no test."""
    parser.add_argument("--output-dir", required=True, help="where best_model.pt, latest.pt (and results.json) are written")
    parser.add_argument("--model-name", default=None, help="name recorded in results (default: the output dir's name)")
    add_arguments(parser)
    parser.add_argument(
        "--val-split",
        type=float,
        default=0.2,
        help="fraction of rollouts for validation where no split file is given (default: %(default)s)",
    )
    parser.add_argument(
        "--test-split", type=float, default=0.1, help="fraction of rollouts for testing where no split file is given (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--resume", action="store_true", help="continue from latest.pt in --output-dir")
    parser.add_argument("--no-test", action="store_true", help="skip scoring the test split and writing results.json")
    return parser


def training_config(args: argparse.Namespace) -> TrainingConfig:
    """The :class:`~vlarisk.settings.TrainingConfig` named by parsed training flags."""
    return config_from_args(args)


def parse_training_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, attach ``args.config``, default ``--model-name`` to the output directory's
    name and apply ``--threads``. Settings argparse cannot check alone (architecture, schedule,
    device) end as a usage error (exit 2), not a traceback."""
    args = parser.parse_args(argv)
    try:
        args.config = training_config(args)
        RiskPredictor(1, args.hidden_dims, dropout=args.dropout, activation=args.activation)
        resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    args.model_name = args.model_name or Path(args.output_dir).name
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def fit_trainer(trainer, args: argparse.Namespace):
    """Resume if asked, drop a stale ``results.json``, train, and log the best epoch."""
    if args.resume:
        trainer.resume()
    # results.json describes the checkpoints beside it; from here on they change, so an old one
    # must not outlive an interrupted run and pass for this run's results.
    (Path(args.output_dir) / "results.json").unlink(missing_ok=True)
    outcome = trainer.fit()
    trainer.log(f"best epoch {outcome.best_epoch}; training took {outcome.wall_seconds:.1f}s")
    return outcome


def add_scoring_arguments(parser: argparse.ArgumentParser, output_help: str, history: bool = True) -> argparse.ArgumentParser:
    """Add the flags of the commands that score a checkpoint: checkpoint, output, threshold, device."""
    parser.add_argument("--checkpoint", required=True, help="best_model.pt")
    if history:
        parser.add_argument("--history", default=None, help="latest.pt whose training history to report (default: the checkpoint's)")
    parser.add_argument("--output", required=True, help=output_help)
    parser.add_argument(
        "--positive-fraction", type=float, default=0.5, help="positive threshold as a fraction of the largest training label"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    return parser


def parse_scoring_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, resolve ``--device`` into ``args.torch_device`` (a usage error when it is
    unavailable) and apply ``--threads``."""
    args = parser.parse_args(argv)
    try:
        args.torch_device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def checkpoint_and_history(args: argparse.Namespace) -> tuple[dict, dict]:
    """The checkpoint to score and the training history to report (``--history``'s, else its own).

    The guide's checkpoints carry no history: it is then reported as empty.
    """
    checkpoint = read_checkpoint(args.checkpoint)
    source = read_checkpoint(args.history) if args.history else checkpoint
    return checkpoint, source.get("history") or {}
