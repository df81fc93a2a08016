"""The training settings ("knobs"), defined once: the fields of :class:`TrainingConfig`.

Each field carries its type, default, help text and (where the values are a closed set) choices.
Everything else is derived from them:

* the training commands' flags (:func:`add_arguments`, used by ``vlarisk.cli_args``): a flag per
  field, ``--<name-with-dashes>`` unless the field names another, typed by the field, booleans as
  ``--x/--no-x``, lists as ``nargs="*"``, help showing the default;
* the flags the pipeline passes for a settings dict (:func:`training_flags`, the rules' params);
* the config keys (``training`` in the pipeline config, ``positive_fraction_of_max`` under
  ``evaluation``), whose JSON schema ``tests/test_settings.py`` holds to these fields.

This module imports nothing but the standard library (not torch, not the rest of the package), so
the Snakefile loads it on every run, dry runs included, at no cost. ``vlarisk.training`` re-exports
:class:`TrainingConfig` and :data:`LOSS_TYPES`.
"""

import argparse
import shlex
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields

LOSS_TYPES = ("mse", "mae", "huber", "bce")
# The hidden-layer activations of vlarisk.models.RiskPredictor (it rejects any other name).
ACTIVATIONS = ("relu", "gelu", "tanh", "silu", "leaky_relu")
CONFIG_SECTIONS = ("training", "evaluation")  # where the pipeline config holds a knob
# Early stopping's default: on the generator family (10 members x 2 seeds, 50 epochs) the kept
# checkpoint's held-out AUC equalled running every epoch's in all 20 runs, stopping after 25 epochs
# on average; patience 10 lost up to 0.012 (benchmarks/results/early_stopping.md, docs/speed.md).
DEFAULT_PATIENCE = 15


def knob(default=MISSING, *, help: str, default_factory=MISSING, choices=None, flag=None, section="training") -> Field:
    """A :class:`TrainingConfig` field and its metadata.

    ``help`` and ``choices`` go to the command-line flag; ``flag`` replaces the flag derived from
    the field's name; ``section`` is the pipeline config block that holds the value.
    """
    if section not in CONFIG_SECTIONS:
        raise ValueError(f"section must be one of {CONFIG_SECTIONS}, got {section!r}")
    metadata = {"help": help, "choices": choices, "flag": flag, "section": section}
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class TrainingConfig:
    """Hyperparameters of one training run; every field is saved in the checkpoint.

    Parameters
    ----------
    epochs, batch_size, lr, weight_decay : training schedule (Adam, gradient norm clipped at ``grad_clip``).
    patience : stop after this many epochs without a better validation score (the one that picks the best epoch); 0 runs every epoch.
    hidden_dims, dropout, activation : the :class:`~vlarisk.models.RiskPredictor` architecture.
    loss_type : ``bce`` (soft-label cross-entropy on logits, the default), ``mse``, ``mae`` or ``huber`` (delta 0.1).
    normalize : standardise inputs with training-split statistics (on by default, unlike the reference).
    seed : seeds weights, data order and dropout.
    device : ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see :func:`vlarisk.device.resolve_device`); ``bf16`` turns on bfloat16 autocast.
    grad_clip : the largest gradient norm; larger gradients are scaled down to it.
    positive_fraction_of_max : label threshold for validation AUC (see :mod:`vlarisk.thresholds`).
    """

    epochs: int = knob(50, help="training epochs (the guide's 50; the pipeline's config/config.yaml sets 20 for its quick run)")
    patience: int = knob(
        DEFAULT_PATIENCE,
        help="stop once this many epochs in a row have not improved the validation score that picks the best epoch; 0 runs every epoch",
    )
    batch_size: int = knob(256, help="training rows per batch")
    lr: float = knob(1e-3, help="Adam learning rate")
    weight_decay: float = knob(0.0, help="Adam weight decay")
    hidden_dims: list[int] = knob(default_factory=lambda: [512, 256], help="hidden layer widths; none gives a linear probe")
    dropout: float = knob(0.1, help="dropout after each hidden layer")
    activation: str = knob("relu", help=f"hidden-layer activation: {', '.join(ACTIVATIONS)}")
    loss_type: str = knob("bce", choices=LOSS_TYPES, help="bce: soft-label cross-entropy on logits; huber: delta 0.1")
    normalize: bool = knob(True, help="standardise inputs with training-split statistics")
    seed: int = knob(0, help="seeds weights, data order and dropout")
    device: str = knob(
        "auto", help="auto (CUDA, else MPS, else CPU; an error if the job was given GPUs that torch cannot use), cpu, cuda, cuda:N or mps"
    )
    bf16: bool = knob(False, help="bfloat16 autocast for the forward pass")
    grad_clip: float = knob(1.0, help="clip the gradient norm at this value")
    positive_fraction_of_max: float = knob(
        0.5, flag="--positive-fraction", section="evaluation", help="positive threshold as a fraction of the largest training label"
    )

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 (0 runs every epoch), got {self.patience}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        self.hidden_dims = [int(h) for h in self.hidden_dims]


def knobs() -> tuple[Field, ...]:
    """The fields of :class:`TrainingConfig`, in order."""
    return fields(TrainingConfig)


def knob_names(section: str | None = None) -> list[str]:
    """Field names, all or those held by one config ``section``."""
    return [f.name for f in knobs() if section is None or f.metadata["section"] == section]


def flag_of(setting: Field) -> str:
    """The command-line flag of a field: ``--epochs``, ``--batch-size``, ``--positive-fraction``."""
    return setting.metadata["flag"] or "--" + setting.name.replace("_", "-")


def dest_of(setting: Field) -> str:
    """The attribute argparse stores the flag's value in (``args.positive_fraction``)."""
    return flag_of(setting)[2:].replace("-", "_")


def default_of(setting: Field):
    """The field's default (a fresh list for list fields)."""
    return setting.default_factory() if setting.default_factory is not MISSING else setting.default


def _type_of(setting: Field):
    return typing.get_type_hints(TrainingConfig)[setting.name]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one flag per field to ``parser``: typed by the field, its default and help shown."""
    for setting in knobs():
        kind = _type_of(setting)
        options = {"dest": dest_of(setting), "default": default_of(setting)}
        if kind is bool:
            # --normalize / --no-normalize: the guide's plain `--normalize` and `--bf16` still work
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            (options["type"],) = typing.get_args(kind)
            options["nargs"] = "*"
        else:
            options["type"] = kind
        if setting.metadata["choices"]:
            options["choices"] = setting.metadata["choices"]
        action = parser.add_argument(flag_of(setting), **options)
        # Set after construction: some Python versions' BooleanOptionalAction append a default of their own.
        action.help = f"{setting.metadata['help']} (default: %(default)s)"
    return parser


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    """The :class:`TrainingConfig` of parsed flags (see :func:`add_arguments`)."""
    return TrainingConfig(**{setting.name: getattr(args, dest_of(setting)) for setting in knobs()})


def training_flags(settings: Mapping, **sections: Mapping) -> str:
    """The flags that give a training command ``settings`` (a pipeline ``training`` block), in field order.

    Fields kept in another config block (``positive_fraction_of_max`` under ``evaluation``) are read
    from that block, passed by name: ``training_flags(settings, evaluation=config["evaluation"])``.
    A field found nowhere is left to the command's default (which is the field's default).
    """
    unknown = sorted(set(settings) - set(knob_names("training")))
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}; known: {knob_names('training')}")
    blocks = {"training": settings, **sections}
    flags = []
    for setting in knobs():
        block = blocks.get(setting.metadata["section"], {})
        if setting.name not in block:
            continue
        value, flag = block[setting.name], flag_of(setting)
        if _type_of(setting) is bool:
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            flags.append(" ".join([flag, *(shlex.quote(str(item)) for item in value)]))
        else:
            flags.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(flags)
