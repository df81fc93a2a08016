"""Command-line flags shared by the training commands, and by the commands that score a checkpoint.

Importing this module does not import torch: building a parser (``--help``) stays quick, and torch
is loaded when the parsed flags are checked.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from pathlib import Path

from vlarisk.core.errors import InputError
from vlarisk.core.io_utils import atomic_path, remove_stale_partials
from vlarisk.core.settings import SplitSettings, TrainingConfig, add_arguments, config_from_args
from vlarisk.data.documents import CHECKPOINT_NAMES, LATEST_CHECKPOINT, RESULTS_FILE, read_checkpoint

BASELINES_HELP = (
    "the source's baselines on this split, fitted once by workflow_scripts/score_baselines.py (.json, its .npz beside it): read instead of "
    "refitting them; refused when computed on other data, split, label cut-offs or detection options"
)
THREADS_HELP = "CPU threads for torch, OpenMP and BLAS (default: OMP_NUM_THREADS where set, as under Snakemake, else torch's choice)"


def add_training_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the training flags to ``parser``: one per :class:`~vlarisk.core.settings.TrainingConfig` field
    (``--epochs`` ... ``--grad-clip``, ``--positive-fraction-of-max``; type, default, help and choices
    come from the field), the split fractions (:class:`~vlarisk.core.settings.SplitSettings`'), then the
    run's own: output, threads, resume, no test."""
    parser.add_argument("--output-dir", required=True, help="where best_model.pt, latest.pt (and results.json) are written")
    parser.add_argument("--model-name", default=None, help="name recorded in results (default: the output dir's name)")
    add_arguments(parser)
    add_arguments(parser.add_argument_group("split, where no --split file is given"), SplitSettings, ("val_fraction", "test_fraction"))
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    parser.add_argument("--resume", action="store_true", help="continue from latest.pt in --output-dir (in --resume-dir when given)")
    parser.add_argument(
        "--resume-dir",
        default=None,
        help="keep the per-epoch checkpoints in this directory instead of --output-dir while training; with --resume, "
        "continue from them, discarding (with a log line) any of other data or settings; when training ends they are "
        "copied to --output-dir and this directory is emptied (default: none, checkpoints go to --output-dir)",
    )
    parser.add_argument("--no-test", action="store_true", help="skip scoring the test split and writing results.json")
    parser.add_argument(
        "--progress-fd",
        type=int,
        default=None,
        help="also write one short line per epoch to this open file descriptor (the pipeline's training rules "
        "pass the terminal's, their output going to the rule's log)",
    )
    return parser


def training_config(args: argparse.Namespace) -> TrainingConfig:
    """The :class:`~vlarisk.core.settings.TrainingConfig` named by parsed training flags."""
    return config_from_args(args)


def parse_training_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, attach ``args.config``, default ``--model-name`` to the output directory's
    name and apply ``--threads``. Settings argparse cannot check alone (architecture, schedule,
    device) end as a usage error (exit 2), not a traceback."""
    args = parser.parse_args(argv)  # before torch loads: --help and usage errors come at once
    from vlarisk.core.device import resolve_device
    from vlarisk.model.models import RiskPredictor

    try:
        args.config = training_config(args)
        RiskPredictor(1, args.hidden_dims, dropout=args.dropout, activation=args.activation)
        resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    args.model_name = args.model_name or Path(args.output_dir).name
    if args.resume_dir is not None and Path(args.resume_dir).resolve() == Path(args.output_dir).resolve():
        parser.error(f"--resume-dir {args.resume_dir}: must differ from --output-dir (it is emptied when training ends)")
    args.progress = None if args.progress_fd is None else epoch_lines(parser, args.progress_fd)
    limit_threads(args.threads)
    return args


def epoch_lines(parser: argparse.ArgumentParser, descriptor: int):
    """A function writing a line to the open file ``descriptor`` at once (``--progress-fd``)."""
    try:
        stream = os.fdopen(descriptor, "w", buffering=1, closefd=False)
    except OSError:
        parser.error(f"--progress-fd {descriptor}: not an open file descriptor")
    return lambda line: print(line, file=stream)


def limit_threads(threads: int | None) -> None:
    """Apply ``--threads`` (else ``OMP_NUM_THREADS``, which Snakemake sets to a job's threads) to
    torch, OpenMP and BLAS alike (:func:`vlarisk.core.device.limit_threads`)."""
    from vlarisk.core.device import limit_threads as limit

    limit(threads or _environment_threads())


def _environment_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a count, or None where unset or not a positive integer."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def fit_trainer(trainer, args: argparse.Namespace, sources: list):
    """Resume if asked, drop a stale ``results.json``, train, fit each source's alarm on its
    calibration rollouts and save it with the best weights, and log the best epoch and the alarms.

    With ``--resume-dir`` the checkpoints are written there during training (a workflow deletes
    a failed job's declared outputs, but not this directory, so its retry resumes from the last
    finished epoch) and copied to ``--output-dir`` at the end. A state there that this run cannot
    resume from (other data, split or settings, past ``--epochs``, unreadable) is discarded with
    a log line and training starts from epoch 1; without ``--resume-dir`` it is an error.
    """
    from vlarisk.score.alarm import alarm_summary, fit_alarms

    if args.resume:
        if args.resume_dir is None:
            trainer.resume()
        elif (Path(args.resume_dir) / LATEST_CHECKPOINT).is_file():  # none: a fresh run, nothing to say
            try:
                trainer.resume()
            except InputError as exc:
                trainer.log(f"--resume-dir: discarding a resume state this run cannot continue ({exc}); starting from epoch 1")
                clear_resume_state(args.resume_dir)
    elif args.resume_dir is not None:
        clear_resume_state(args.resume_dir)  # training starts afresh: no older epoch may be mixed in
    # results.json describes the checkpoints beside it; from here on they change, so an old one
    # must not outlive an interrupted run and pass for this run's results.
    (Path(args.output_dir) / RESULTS_FILE).unlink(missing_ok=True)
    outcome = trainer.fit()
    alarms = fit_alarms(outcome.model, sources, outcome.device, args.alpha)
    trainer.save_best(alarms)
    if args.resume_dir is not None:
        publish_checkpoints(args.resume_dir, args.output_dir)
    trainer.log(f"best epoch {outcome.best_epoch}; training took {outcome.wall_seconds:.1f}s")
    trainer.log(alarm_summary(alarms))
    return outcome


def publish_checkpoints(state_dir: str | Path, output_dir: str | Path) -> None:
    """Copy the finished run's checkpoints from ``state_dir`` into ``output_dir`` (each atomically:
    complete or absent). The state stays until :func:`clear_resume_state`, so a failure after this
    point still resumes at the last epoch."""
    for name in CHECKPOINT_NAMES:
        source = Path(state_dir) / name
        if source.exists():
            with atomic_path(Path(output_dir) / name) as tmp:
                shutil.copyfile(source, tmp)


def clear_resume_state(state_dir: str | Path | None) -> None:
    """Remove the checkpoints (and torn temporary files) in ``state_dir``, then the directory if
    it is empty: a finished run leaves nothing a later run of other settings could resume from."""
    if state_dir is None:
        return
    directory = Path(state_dir)
    if not directory.is_dir():
        return
    for name in CHECKPOINT_NAMES:
        (directory / name).unlink(missing_ok=True)
        remove_stale_partials(directory / name)
    with contextlib.suppress(OSError):
        directory.rmdir()


def add_scoring_arguments(parser: argparse.ArgumentParser, output_help: str, history: bool = True) -> argparse.ArgumentParser:
    """Add the flags of the commands that score a checkpoint: checkpoint, output, threshold, device."""
    parser.add_argument("--checkpoint", required=True, help="best_model.pt")
    if history:
        parser.add_argument("--history", default=None, help="latest.pt whose training history to report (default: the checkpoint's)")
    parser.add_argument("--output", required=True, help=output_help)
    add_arguments(parser, TrainingConfig, ("device", "positive_fraction_of_max"))
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    return parser


def parse_scoring_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, resolve ``--device`` into ``args.torch_device`` (a usage error when it is
    unavailable) and apply ``--threads``."""
    args = parser.parse_args(argv)  # before torch loads: --help and usage errors come at once
    from vlarisk.core.device import resolve_device

    try:
        args.torch_device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    limit_threads(args.threads)
    return args


def checkpoint_and_history(args: argparse.Namespace) -> tuple[dict, dict]:
    """The checkpoint to score and the training history to report (``--history``'s, else its own).

    The guide's checkpoints carry no history: it is then reported as empty.
    """
    checkpoint = read_checkpoint(args.checkpoint)
    source = read_checkpoint(args.history) if args.history else checkpoint
    return checkpoint, source.get("history") or {}
