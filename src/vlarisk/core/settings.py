"""The pipeline's settings, each written once: one dataclass per config block, a field per key.

Every field carries its default, type, help text, choices and the JSON-schema constraints of its
value (:func:`setting`). Everything else is derived from the fields:

* the commands' flags (:func:`add_arguments`): ``--<key-with-dashes>`` for each key (``--val-fraction``
  for ``val_fraction``), typed by the field, booleans as ``--x/--no-x``, lists as ``nargs="*"``,
  the help showing the default; older spellings (the training guide's ``--val-split``) stay as aliases;
* the flags the rules pass for a config block (:func:`block_flags`, :func:`training_flags`);
* the config schema's blocks (:func:`block_schema`, assembled by :mod:`vlarisk.workflow.config_schema`
  into ``config/schema/config.schema.yaml``), whose defaults Snakemake's ``validate`` fills in;
* the settings tables of ``docs/settings.md`` (:func:`settings_table`).

The blocks: ``training`` (:class:`TrainingConfig`; ``positive_fraction_of_max`` is kept under
``evaluation``), ``split`` (:class:`SplitSettings`) and ``detection`` (:class:`DetectionSettings`).

This module imports nothing but the standard library (not torch, not the rest of the package), so
the Snakefile and every command's ``--help`` load it at no cost.
"""

import argparse
import shlex
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields

LOSS_TYPES = ("mse", "mae", "huber", "bce")
# The hidden-layer activations of vlarisk.model.models.RiskPredictor (it rejects any other name).
ACTIVATIONS = ("relu", "gelu", "tanh", "silu", "leaky_relu")
# The deployed monitor's thresholds: one constant, or a band over time (vlarisk.score.detection).
THRESHOLD_KINDS = ("constant", "band")
AUTO = "auto"  # held_out_tasks / calibration_tasks: chosen from the tasks (vlarisk.data.splits)
CONFIG_SECTIONS = ("training", "evaluation", "split", "detection")  # the config blocks that hold a setting
# Early stopping's default: on the generator family (10 members x 2 seeds, 50 epochs) the kept
# checkpoint's held-out AUC equalled running every epoch's in all 20 runs, stopping after 25 epochs
# on average; patience 10 lost up to 0.012 (benchmarks/results/early_stopping.md, docs/speed.md).
DEFAULT_PATIENCE = 15
FRACTION = {"minimum": 0, "exclusiveMaximum": 1}
TASKS = {"oneOf": [{"const": AUTO}, {"type": "array", "items": {"type": ["string", "integer"]}}]}


def setting(
    default=MISSING,
    *,
    help: str,
    default_factory=MISSING,
    choices=None,
    schema=None,
    flag=None,
    aliases: Iterable[str] = (),
    section: str | None = None,
) -> Field:
    """A settings field and its metadata.

    ``help`` and ``choices`` go to the command-line flag and the docs; ``schema`` holds the JSON-schema
    constraints of the value beyond its type (``{"minimum": 1}``), or its whole schema when that has
    a ``oneOf``; ``flag`` replaces the flag derived from the name (``False``: no flag, the key is read
    by the pipeline only); ``aliases`` are further flags of the same value; ``section`` is the config
    block that holds the value when it is not the class's own (:data:`CONFIG_SECTIONS`).
    """
    if section is not None and section not in CONFIG_SECTIONS:
        raise ValueError(f"section must be one of {CONFIG_SECTIONS}, got {section!r}")
    metadata = {
        "help": help,
        "choices": choices,
        "schema": schema or {},
        "flag": flag,
        "aliases": tuple(aliases),
        "section": section,
    }
    return field(default=default, default_factory=default_factory, metadata=metadata)


knob = setting  # a training setting ("knob"), as TrainingConfig's fields are written


@dataclass
class TrainingConfig:
    """Hyperparameters of one training run; every field is saved in the checkpoint.

    Parameters
    ----------
    epochs, batch_size, lr, weight_decay : training schedule (Adam, gradient norm clipped at ``grad_clip``).
    patience : stop after this many epochs without a better validation score (the one that picks the best epoch); 0 runs every epoch.
    hidden_dims, dropout, activation : the :class:`~vlarisk.model.models.RiskPredictor` architecture.
    loss_type : ``bce`` (soft-label cross-entropy on logits, the default), ``mse``, ``mae`` or ``huber`` (delta 0.1).
    normalize : standardise inputs with training-split statistics (on by default, unlike the reference).
    seed : seeds weights, data order and dropout.
    device : ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see :func:`vlarisk.core.device.resolve_device`); ``bf16`` turns on bfloat16 autocast.
    grad_clip : the largest gradient norm; larger gradients are scaled down to it.
    positive_fraction_of_max : fraction of the training maximum that sets the label cut-offs for validation AUC (see :mod:`vlarisk.data.label_cutoffs`).
    """

    BLOCK: typing.ClassVar[str] = "training"

    epochs: int = knob(
        50, schema={"minimum": 1}, help="training epochs (the guide's 50; the pipeline's config/config.yaml sets 20 for its quick run)"
    )
    patience: int = knob(
        DEFAULT_PATIENCE,
        schema={"minimum": 0},
        help="stop once this many epochs in a row have not improved the validation score that picks the best epoch; 0 runs every epoch",
    )
    batch_size: int = knob(256, schema={"minimum": 1}, help="training rows per batch")
    lr: float = knob(1e-3, schema={"exclusiveMinimum": 0}, help="Adam learning rate")
    weight_decay: float = knob(0.0, schema={"minimum": 0}, help="Adam weight decay")
    hidden_dims: list[int] = knob(
        default_factory=lambda: [512, 256], schema={"items": {"minimum": 1}}, help="hidden layer widths; none gives a linear probe"
    )
    dropout: float = knob(0.1, schema={"minimum": 0, "exclusiveMaximum": 1}, help="dropout after each hidden layer")
    activation: str = knob("relu", choices=ACTIVATIONS, help="hidden-layer activation")
    loss_type: str = knob("bce", choices=LOSS_TYPES, help="bce: soft-label cross-entropy on logits; huber: delta 0.1")
    normalize: bool = knob(True, help="standardise inputs with training-split statistics")
    seed: int = knob(0, schema={"minimum": 0}, help="seeds weights, data order and dropout")
    device: str = knob(
        "auto",
        schema={"pattern": "^(auto|cpu|mps|cuda(:[0-9]+)?)$"},
        help="auto (CUDA, else MPS, else CPU; an error if the job was given GPUs that torch cannot use), cpu, cuda, cuda:N or mps",
    )
    bf16: bool = knob(False, help="bfloat16 autocast for the forward pass")
    grad_clip: float = knob(1.0, schema={"exclusiveMinimum": 0}, help="clip the gradient norm at this value")
    positive_fraction_of_max: float = knob(
        0.5,
        schema={"exclusiveMinimum": 0, "maximum": 1},
        aliases=["--positive-fraction"],
        section="evaluation",
        help="a step is a positive when its label is at least this fraction of the largest training label",
    )

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 (0 runs every epoch), got {self.patience}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        self.hidden_dims = [int(h) for h in self.hidden_dims]


@dataclass
class SplitSettings:
    """How a dataset is split by rollout (:func:`vlarisk.data.splits.split_rollouts`): the ``split`` block."""

    BLOCK: typing.ClassVar[str] = "split"

    val_fraction: float = setting(
        0.2, schema=FRACTION, aliases=["--val-split"], help="fraction of each outcome's seen-task rollouts for validation"
    )
    test_fraction: float = setting(
        0.1, schema=FRACTION, aliases=["--test-split"], help="fraction of each outcome's seen-task rollouts for test_seen"
    )
    calibration_fraction: float = setting(
        0.15,
        schema=FRACTION,
        aliases=["--calibration-split"],
        help="fraction of the seen tasks' successes kept to calibrate the alarm threshold (0: none; the alarm is then fitted on val)",
    )
    seed: int = setting(0, schema={"minimum": 0}, help="seeds the split")
    held_out_tasks: str | list[str] = setting(
        AUTO,
        schema=TASKS,
        help=f"tasks whose rollouts form test_unseen: '{AUTO}' holds out unseen_task_fraction of the tasks when there are "
        "at least 5, or a list of task ids (none: no unseen tasks)",
    )
    unseen_task_fraction: float = setting(0.2, schema=FRACTION, help=f"share of the tasks held out by '{AUTO}'")
    calibration_tasks: str | list[str] = setting(
        default_factory=list,
        schema=TASKS,
        help=f"tasks held out of training whose successes calibrate the alarm (bounds false alarms on new tasks); '{AUTO}' "
        "chooses unseen_task_fraction of the tasks; none: calibrate on calibration_fraction of the training tasks' successes",
    )
    n_task_splits: int = setting(
        1,
        flag=False,
        schema={"minimum": 1},
        help="leave-tasks-out splits, each trained and scored (results/models/<source>/task-split-<k>/); split k > 0 draws with "
        f"a seed derived from seed and k; more than one needs held_out_tasks: {AUTO}",
    )


@dataclass
class DetectionSettings:
    """How rollout-level failure detection is measured (:mod:`vlarisk.score.detection`): the ``detection`` block."""

    BLOCK: typing.ClassVar[str] = "detection"

    alpha: float = setting(
        0.1, schema={"exclusiveMinimum": 0, "exclusiveMaximum": 1}, help="alarm level: false-alarm rate on successes at most alpha"
    )
    horizon: int | None = setting(
        None, schema={"minimum": 1}, help="compare rollouts up to this step (none: each task's shortest calibration rollout)"
    )
    n_boot: int = setting(1000, schema={"minimum": 1}, help="bootstrap resamples of rollouts for the 95%% intervals")
    seed: int = setting(0, flag="--detection-seed", aliases=["--bootstrap-seed"], schema={"minimum": 0}, help="seed of the bootstrap")
    threshold: str = setting(
        THRESHOLD_KINDS[0],
        choices=THRESHOLD_KINDS,
        aliases=["--alarm-threshold"],
        help="threshold of the deployed monitor: one constant, or a band over time shaped on training successes",
    )


BLOCKS = (TrainingConfig, SplitSettings, DetectionSettings)


# ------------------------------------------------------------------------------------ fields
def settings_of(kind=TrainingConfig, section: str | None = None) -> list[Field]:
    """The fields of a settings class, all or those held by one config ``section``."""
    return [f for f in fields(kind) if section is None or section_of(kind, f) == section]


def knobs() -> tuple[Field, ...]:
    """The fields of :class:`TrainingConfig`, in order."""
    return fields(TrainingConfig)


def knob_names(section: str | None = None) -> list[str]:
    """:class:`TrainingConfig`'s field names, all or those held by one config ``section``."""
    return [f.name for f in settings_of(TrainingConfig, section)]


def section_of(kind, setting: Field) -> str:
    """The config block that holds a field: its own ``section``, else its class's block."""
    return setting.metadata["section"] or kind.BLOCK


def block_fields(block: str) -> list[tuple[type, Field]]:
    """Every ``(class, field)`` held by a config block, in class and field order."""
    return [(kind, f) for kind in BLOCKS for f in fields(kind) if section_of(kind, f) == block]


def flag_of(setting: Field) -> str | None:
    """The command-line flag of a field (``--epochs``, ``--val-fraction``); None for a key with no flag."""
    if setting.metadata["flag"] is False:
        return None
    return setting.metadata["flag"] or "--" + setting.name.replace("_", "-")


def dest_of(setting: Field) -> str:
    """The attribute argparse stores the flag's value in (``args.positive_fraction_of_max``)."""
    return flag_of(setting)[2:].replace("-", "_")


def default_of(setting: Field):
    """The field's default (a fresh list for list fields)."""
    return setting.default_factory() if setting.default_factory is not MISSING else setting.default


def defaults(kind) -> dict:
    """A settings class's keys and their defaults."""
    return {f.name: default_of(f) for f in fields(kind)}


def type_of(kind, setting: Field):
    """A field's annotated type (``int``, ``list[int]``, ``int | None``, ``str | list[str]``)."""
    return typing.get_type_hints(kind)[setting.name]


def _parts(annotation) -> tuple:
    """The members of a union type, or the type alone."""
    return typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)


# ------------------------------------------------------------------------------------- flags
def add_arguments(parser: argparse.ArgumentParser, kind=TrainingConfig, names: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """Add one flag per field of ``kind`` (or of the fields ``names``) to ``parser``: typed by the
    field, its default and help shown, its aliases accepted."""
    chosen = [f for f in fields(kind) if flag_of(f) and (names is None or f.name in names)]
    for setting in chosen:
        options = {"dest": dest_of(setting), "default": default_of(setting), **_argument_type(type_of(kind, setting))}
        if setting.metadata["choices"]:
            options["choices"] = setting.metadata["choices"]
        action = parser.add_argument(flag_of(setting), *setting.metadata["aliases"], **options)
        # Set after construction: some Python versions' BooleanOptionalAction append a default of their own.
        action.help = f"{setting.metadata['help']} (default: %(default)s)"
    return parser


def _argument_type(annotation) -> dict:
    """argparse options for a field type: --x/--no-x for booleans, ``nargs="*"`` for lists."""
    parts = [part for part in _parts(annotation) if part is not type(None)]
    if parts == [bool]:
        # --normalize / --no-normalize: the guide's plain `--normalize` and `--bf16` still work
        return {"action": argparse.BooleanOptionalAction}
    listed = [part for part in parts if typing.get_origin(part) is list]
    if listed:
        (item,) = typing.get_args(listed[0])
        return {"type": item, "nargs": "*"}
    (single,) = parts
    return {"type": single}


def config_from_args(args: argparse.Namespace, kind=TrainingConfig):
    """The settings of parsed flags (see :func:`add_arguments`)."""
    return kind(**{setting.name: getattr(args, dest_of(setting)) for setting in fields(kind) if flag_of(setting)})


def tasks_argument(value):
    """A task-list flag's value as the split takes it: ``auto``, or the list of task ids."""
    return AUTO if value in (AUTO, [AUTO]) else list(value)


def block_flags(kind, settings: Mapping, **sections: Mapping) -> str:
    """The flags that give a command the settings ``settings`` of ``kind``'s block, in field order.

    Fields kept in another config block (``positive_fraction_of_max`` under ``evaluation``) are read
    from that block, passed by name: ``block_flags(TrainingConfig, training, evaluation=...)``. A
    field found nowhere, set to None, or that is no flag is left to the command's default (the field's).
    """
    known = [f.name for f in settings_of(kind, kind.BLOCK)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"unknown {kind.BLOCK} setting(s) {unknown}; known: {known}")
    blocks = {kind.BLOCK: settings, **sections}
    flags = []
    for setting in fields(kind):
        block = blocks.get(section_of(kind, setting), {})
        if setting.name not in block or block[setting.name] is None or not flag_of(setting):
            continue
        value, flag = block[setting.name], flag_of(setting)
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            flags.append(" ".join([flag, *(shlex.quote(str(item)) for item in value)]))
        else:
            flags.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(flags)


def training_flags(settings: Mapping, **sections: Mapping) -> str:
    """The flags that give a training command ``settings`` (a pipeline ``training`` block); see :func:`block_flags`."""
    return block_flags(TrainingConfig, settings, **sections)


# ------------------------------------------------------------------------------------ schema
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", type(None): "null"}


def value_schema(kind, setting: Field) -> dict:
    """The JSON schema of one field's value: its type and the field's own constraints."""
    own = dict(setting.metadata["schema"])
    if "oneOf" in own:
        return own
    if setting.metadata["choices"]:
        return {"enum": list(setting.metadata["choices"])}
    parts = _parts(type_of(kind, setting))
    listed = [part for part in parts if typing.get_origin(part) is list]
    if listed:
        (item,) = typing.get_args(listed[0])
        return {"type": "array", **own, "items": {"type": _JSON_TYPES[item], **own.get("items", {})}}
    names = [_JSON_TYPES[part] for part in parts]
    return {"type": names[0] if len(names) == 1 else names, **own}


def block_schema(block: str, with_defaults: bool) -> dict:
    """The JSON schema of a config block; ``with_defaults``: each key's default as well (for the block
    itself, which Snakemake's ``validate`` fills), not for blocks of overrides of it."""
    properties = {}
    for kind, setting in block_fields(block):
        properties[setting.name] = value_schema(kind, setting)
        if with_defaults:
            properties[setting.name]["default"] = default_of(setting)
    return {"type": "object", "additionalProperties": False, "properties": properties}


# -------------------------------------------------------------------------------------- docs
def settings_table(block: str) -> str:
    """A block's settings as a Markdown table: key, default, flag, meaning."""
    rows = ["| key | default | flag | meaning |", "| --- | --- | --- | --- |"]
    for _, setting in block_fields(block):
        flag = " ".join(f"`{name}`" for name in (flag_of(setting), *setting.metadata["aliases"]) if name) or "(pipeline only)"
        meaning = setting.metadata["help"].replace("%%", "%").replace("|", "\\|")
        if setting.metadata["choices"]:
            meaning += f" (one of {', '.join(setting.metadata['choices'])})"
        rows.append(f"| `{setting.name}` | `{_yaml_value(default_of(setting))}` | {flag} | {meaning} |")
    return "\n".join(rows)


def _yaml_value(value) -> str:
    """A default as the config file writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    return str(value)
