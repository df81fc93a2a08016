"""The detection flags of the commands that score a model, and the options they name.

Torch-free (numpy at most, through :mod:`vlarisk.score.detection`), so that a command's ``--help`` and
its usage errors come without loading torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vlarisk.core.settings import DetectionSettings, add_arguments, config_from_args
from vlarisk.score.detection import DEFAULT_ALPHA_GRID


@dataclass(frozen=True)
class DetectionOptions:
    """How detection is measured: alarm level ``alpha`` (and a grid for tables), the horizon
    (``None``: from the calibration rollouts), the bootstrap's resamples and seed, and which
    threshold the deployed monitor uses (``constant``, or the functional ``band``); the defaults
    are :class:`~vlarisk.core.settings.DetectionSettings`'."""

    alpha: float = DetectionSettings.alpha
    alpha_grid: tuple[float, ...] = field(default=DEFAULT_ALPHA_GRID)
    horizon: int | None = DetectionSettings.horizon
    n_boot: int = DetectionSettings.n_boot
    seed: int = DetectionSettings.seed
    threshold: str = DetectionSettings.threshold

    def report_options(self) -> dict:
        """Keyword arguments of :func:`vlarisk.score.detection.detection_report` (the band itself is passed apart)."""
        options = asdict(self)
        del options["threshold"]
        return options


def add_detection_arguments(parser) -> None:
    """The detection flags of the evaluation commands: one per :class:`~vlarisk.core.settings.DetectionSettings` field."""
    add_arguments(parser, DetectionSettings)


def detection_options(args) -> DetectionOptions:
    """The options of parsed :func:`add_detection_arguments` flags."""
    return DetectionOptions(**asdict(config_from_args(args, DetectionSettings)))
