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
``evaluation``), ``split`` (:class:`SplitSettings`), ``detection`` (:class:`DetectionSettings`), a
source's ``simulate`` block (:class:`SimulationSettings`, the synthetic generator's spec) and
``collect`` block (:class:`CollectionSettings`, with its ``policy`` sub-block :class:`PolicySettings`),
``multi_model`` (:class:`MultiModelSettings`) and ``ablations`` (:class:`AblationSettings`). Values
made in Python are held to the same constraints as the config (:func:`check_values`).

This module imports nothing but the standard library and :mod:`vlarisk.core.constants` (not numpy, not torch), so
the Snakefile and every command's ``--help`` load it at no cost.
"""

import argparse
import copy
import json
import numbers
import operator
import shlex
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields

from vlarisk.core.constants import NUM_DIMENSIONS

LOSS_TYPES = ("mse", "mae", "huber", "bce")
# The hidden-layer activations of vlarisk.model.models.RiskPredictor (it rejects any other name).
ACTIVATIONS = ("relu", "gelu", "tanh", "silu", "leaky_relu")
# The deployed monitor's thresholds: one constant, or a band over time (vlarisk.score.detection).
THRESHOLD_KINDS = ("constant", "band")
AUTO = "auto"  # held_out_tasks / calibration_tasks: chosen from the tasks (vlarisk.data.splits)
# the config blocks that hold a setting (simulate, collect and its policy: a source's blocks)
CONFIG_SECTIONS = ("training", "evaluation", "split", "detection", "simulate", "collect", "policy", "multi_model", "ablations")
# Early stopping's defaults: training stops PATIENCE epochs after the last new best, a new best being
# more than MIN_DELTA above the best validation score. Patience 15 kept the full run's checkpoint (or
# a better one) on the generator family (10 members x 2 seeds, 50 epochs) and on seed0-shaped sources
# with 1 thread, stopping after 25 epochs on average, but lost 0.012 on a 2-thread run of half the
# seed0 pool. A min-delta of 0.002 with patience 10 stopped after 16.6 epochs and held on the same runs
# except that one, but kept the generator family's sparse member 0.033 below its logistic baseline in
# 6-epoch runs (slow, steady gains are ignored), so it is not the default
# (benchmarks/results/early_stopping.md, docs/speed.md).
DEFAULT_PATIENCE = 15
DEFAULT_MIN_DELTA = 0.0
FRACTION = {"minimum": 0, "exclusiveMaximum": 1}
TASKS = {"oneOf": [{"const": AUTO}, {"type": "array", "items": {"type": ["string", "integer"]}}]}
NAME = {"pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$"}  # a source's or a multi-model group's name
LENGTH = {
    "description": "a rollout length (at least 2), or an inclusive range [lo, hi] of lengths",
    "oneOf": [
        {"type": "integer", "minimum": 2},
        {"type": "array", "items": {"type": "integer", "minimum": 2}, "minItems": 2, "maxItems": 2},
    ],
}
SHARE = {"minimum": 0, "maximum": 1}
LAYOUTS = ("dict", "list")  # a rollout pickle: {"trajectories": [...], "metadata": {...}}, or a bare list
ENVIRONMENTS = ("metaworld",)  # the physics simulators a `collect` block runs in
FAULT_KINDS = ("none", "action_noise", "perception_bias", "gripper_open")  # vlarisk.physics.perturbations
TRAINING_OVERRIDES = {"$ref": "#/definitions/training"}  # a block of training settings with no defaults
ALL_SOURCES = "all"  # a multi-model group listed as `all`: every configured source
ABLATION_FACTORS = ("loss_type", "hidden_dims", "dropout", "normalize")  # training settings an ablation varies
LABEL_VARIANTS = ("provided", "heuristic")  # the labels factor's values


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
    required: bool = False,
) -> Field:
    """A settings field and its metadata.

    ``help`` and ``choices`` go to the command-line flag and the docs; ``schema`` holds the JSON-schema
    constraints of the value beyond its type (``{"minimum": 1}``), or its whole schema when that has
    a ``oneOf``; ``flag`` replaces the flag derived from the name (``False``: no flag, the key is read
    by the pipeline only); ``aliases`` are further flags of the same value; ``section`` is the config
    block that holds the value when it is not the class's own (:data:`CONFIG_SECTIONS`); ``required``:
    the config block must give the key, whatever the command's default.
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
        "required": required,
    }
    return field(default=default, default_factory=default_factory, metadata=metadata)


knob = setting  # a training setting ("knob"), as TrainingConfig's fields are written


@dataclass
class TrainingConfig:
    """Hyperparameters of one training run; every field is saved in the checkpoint.

    Parameters
    ----------
    epochs, batch_size, lr, weight_decay : training schedule (Adam, gradient norm clipped at ``grad_clip``).
    patience, min_delta : stop after ``patience`` epochs without a validation score (the one that picks the best epoch) more than ``min_delta`` above the best; ``patience`` 0 runs every epoch.
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
    min_delta: float = knob(
        DEFAULT_MIN_DELTA,
        schema={"minimum": 0},
        help="an epoch is the new best only if its validation score (mean AUC) beats the best by more than this",
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
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")
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


@dataclass
class SimulationSettings:
    """A source's ``simulate`` block: everything that determines a synthetic source (the generator's
    :class:`vlarisk.data.synthetic.SimulationSpec`); the same settings always give the same bytes."""

    BLOCK: typing.ClassVar[str] = "simulate"
    OPTION: typing.ClassVar[str] = "--spec"  # vlarisk-simulate takes the block as one JSON object

    hidden_dim: int = setting(
        64, schema={"minimum": NUM_DIMENSIONS + 1}, help="size of the hidden states (4096 for OpenVLA; small values keep the run fast)"
    )
    num_success: int = setting(200, schema={"minimum": 1}, help="rollouts written to success_rollouts.pkl")
    num_failure: int = setting(400, schema={"minimum": 1}, help="rollouts written to failure_rollouts.pkl")
    success_steps: tuple[int, int] = setting(
        (40, 70), schema=LENGTH, help="successful rollouts' length, or an inclusive range [lo, hi] (equal ranges: length tells nothing)"
    )
    failure_steps: int | tuple[int, int] = setting(80, schema=LENGTH, help="failed rollouts' length, or an inclusive range [lo, hi]")
    num_tasks: int = setting(
        10, schema={"minimum": 1}, help="tasks the rollouts are spread over; each shifts the hidden state by its own offset"
    )
    chunk_size: int = setting(8, schema={"minimum": 1}, help="steps that share one hidden state (an action chunk); 1: a state per step")
    signal_strength: list[float] = setting(
        default_factory=lambda: [3.0, 4.0, 3.5, 2.0, 3.5, 2.5, 3.0],
        schema={"minItems": NUM_DIMENSIONS, "maxItems": NUM_DIMENSIONS},
        help="shift along each action dimension's planted direction at full risk, in noise standard deviations",
    )
    failure_signal_strength: float = setting(2.0, help="shift along the shared failure-progress direction at the end of a failed rollout")
    task_offset_scale: float = setting(0.5, schema={"minimum": 0}, help="scale of each task's offset of the hidden state")
    risk_window_fraction: float = setting(
        0.2,
        schema={"exclusiveMinimum": 0, "maximum": 1},
        help="the planted risk ramps over the last max(min_risk_window, fraction x length) steps of a failure",
    )
    min_risk_window: int = setting(10, schema={"minimum": 1}, help="the shortest risk window, in steps")
    failure_onset: tuple[float, float] | None = setting(
        None,
        schema={"items": {"minimum": 0, "exclusiveMaximum": 1}},
        help="a labelled failure onset: each failed rollout's culprits' risk ramps from a relative time drawn from [lo, hi) "
        "to 1 at its end (none: the ramp covers the risk window)",
    )
    failure_drift: float = setting(
        0.0,
        schema={"minimum": 0},
        help="early warning: failed rollouts drift along the failure-progress direction from 0 at their first step to this "
        "at their last (labels unchanged: a precursor only rollout-level detection is scored on)",
    )
    action_coupling: float = setting(1.0, schema=SHARE, help="how much a culprit's action magnitude follows its risk (0: not at all)")
    nonlinear_dimensions: list[int] = setting(
        default_factory=list,
        schema={"items": {"minimum": 0, "maximum": NUM_DIMENSIONS - 1}, "uniqueItems": True},
        help="dimensions whose shift has a random sign per rollout: no linear read-out sees them",
    )
    task_specific: float = setting(0.0, schema=SHARE, help="share of each direction drawn per task instead of shared")
    massive_features: int = setting(
        0, schema={"minimum": 0}, help="features carrying a huge, nearly constant activation (massive_scale times the noise)"
    )
    massive_scale: float = setting(100.0, help="the massive features' activation, in noise standard deviations")
    feature_scale_sigma: float = setting(0.0, schema={"minimum": 0}, help="each feature is scaled by exp(sigma x N(0, 1)): uneven scales")
    with_labels: bool = setting(True, help="write per_dim_risk step labels (the planted risk); otherwise the heuristic must label")
    layout: str = setting(LAYOUTS[0], choices=LAYOUTS, help="the pickle holds {trajectories, metadata} (dict) or a bare list (list)")
    seed: int = setting(0, schema={"minimum": 0}, help="seeds every draw of the source")

    def __post_init__(self) -> None:
        check_values(self)
        self.success_steps = length_range(self.success_steps, "success_steps")
        self.failure_steps = length_range(self.failure_steps, "failure_steps")
        self.nonlinear_dimensions = sorted(int(d) for d in self.nonlinear_dimensions)
        if self.failure_onset is not None:
            low, high = (float(v) for v in self.failure_onset)
            if not low <= high:
                raise ValueError(f"failure_onset must be a range lo <= hi of relative times, got {self.failure_onset!r}")
            self.failure_onset = (low, high)
        if self.massive_features > self.hidden_dim - NUM_DIMENSIONS - 1:
            raise ValueError(f"massive_features must leave room for the planted directions, got {self.massive_features}")


def length_range(value, name: str) -> tuple[int, int]:
    """A rollout length ``n`` or range ``(lo, hi)`` as an inclusive range of lengths."""
    low, high = (int(part) for part in value) if isinstance(value, (list, tuple)) else (int(value), int(value))
    if not low <= high:
        raise ValueError(f"{name} must be a length >= 2 or a range lo <= hi, got {value!r}")
    return low, high


@dataclass(kw_only=True)
class CollectSettings:
    """A source's ``collect`` block: a physics source collected in MetaWorld (:mod:`vlarisk.physics.collect`,
    docs/physics-source.md); the flags of ``vlarisk-collect``."""

    BLOCK: typing.ClassVar[str] = "collect"

    env: str = setting(ENVIRONMENTS[0], choices=ENVIRONMENTS, help="simulator")
    tasks: list[str] = setting(
        required=True,
        schema={"items": {"pattern": "^[a-z0-9-]+-v3$"}, "minItems": 1, "uniqueItems": True},
        help="MetaWorld v3 tasks, e.g. pick-place-v3 push-v3",
    )
    episodes: int = setting(200, schema={"minimum": 1}, required=True, help="episodes in all, split evenly over the tasks")
    seed: int = setting(0, schema={"minimum": 0}, help="seeds the policy's demos and training, the faults and the episodes")
    horizon: int = setting(150, schema={"minimum": 2}, help="step limit of an episode (and of the policy's demos)")
    max_labelled_failures: int = setting(
        60, schema={"minimum": 1}, help="failures per task that get t* and blame (the others are left out)"
    )
    mix: dict[str, float] = setting(
        default_factory=lambda: {"none": 0.2, "action_noise": 0.25, "perception_bias": 0.35, "gripper_open": 0.2},
        schema={
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {kind: {"type": "number", "minimum": 0} for kind in FAULT_KINDS},
        },
        help=f"the fault mix, JSON: kind -> weight ({', '.join(FAULT_KINDS)})",
    )
    policy: dict = setting(
        default_factory=dict,
        schema={"block": "policy"},
        flag="--policy-settings",
        help="JSON object of policy settings (demos_per_task, epochs, ...; the policy block)",
    )

    def __post_init__(self) -> None:
        check_values(self)


@dataclass(frozen=True)
class PolicySettings:
    """A ``collect`` block's ``policy`` sub-block: how the behaviour-cloned policy is trained (demos per task,
    their noise and horizon, the MLP and its optimiser; :func:`vlarisk.physics.policy.train_policy`)."""

    BLOCK: typing.ClassVar[str] = "policy"
    OPTION: typing.ClassVar[str] = "--policy-settings"  # vlarisk-collect takes the block as one JSON object

    demos_per_task: int = setting(40, schema={"minimum": 1}, help="scripted-expert demos per task")
    demo_noise: float = setting(0.3, schema={"minimum": 0}, help="Gaussian noise on the demos' executed actions")
    horizon: int = setting(CollectSettings.horizon, section="collect", flag=False, help="the collect block's horizon")
    hidden_dims: tuple[int, ...] = setting((256, 256), schema={"items": {"minimum": 1}, "minItems": 1}, help="the MLP's hidden widths")
    epochs: int = setting(100, schema={"minimum": 1}, help="behaviour-cloning epochs")
    batch_size: int = setting(256, schema={"minimum": 1}, help="demo steps per batch")
    lr: float = setting(1e-3, schema={"exclusiveMinimum": 0}, help="Adam learning rate")
    seed: int = setting(CollectSettings.seed, section="collect", flag=False, help="the collect block's seed")

    def __post_init__(self) -> None:
        check_values(self)


@dataclass(kw_only=True)
class MultiModelSettings:
    """The ``multi_model`` block: one predictor per group of sources (:mod:`vlarisk.workflow.planning`)."""

    BLOCK: typing.ClassVar[str] = "multi_model"

    groups: dict[str, list[str]] = setting(
        default_factory=lambda: {"all_sources": ALL_SOURCES},
        flag=False,
        schema={
            "propertyNames": NAME,
            "additionalProperties": {
                "oneOf": [
                    {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
                    {"enum": [ALL_SOURCES], "description": "every configured source (the group is left out with fewer than two)"},
                ]
            },
        },
        help=f"group name -> its sources, or `{ALL_SOURCES}` (every configured source; left out with fewer than two); yours replace the default",
    )
    training: dict = setting(
        flag=False, schema=TRAINING_OVERRIDES, help="overrides of `training` for every group (needs >= 1 hidden layer)"
    )


@dataclass(kw_only=True)
class AblationSettings:
    """The ``ablations`` block: each factor varied alone around the training settings, per seed (:mod:`vlarisk.workflow.planning`)."""

    BLOCK: typing.ClassVar[str] = "ablations"

    sources: list[str] = setting(flag=False, schema={"uniqueItems": True}, help="the ablated sources (left out: the first configured one)")
    seeds: list[int] = setting(
        default_factory=lambda: [0, 1, 2], flag=False, schema={"items": {"minimum": 0}, "uniqueItems": True}, help="the seeds of every cell"
    )
    training: dict = setting(flag=False, schema=TRAINING_OVERRIDES, help="overrides of `training` for every ablation cell")
    factors: dict[str, list] = setting(
        default_factory=lambda: {
            "loss_type": ["mse", "mae", "huber", "bce"],
            "hidden_dims": [[], [256], [512, 256], [1024, 512, 256]],  # [] is a linear probe
            "dropout": [0.0, 0.1],
            "normalize": [True, False],
            "labels": list(LABEL_VARIANTS),
        },
        flag=False,
        help=f"factor -> the values it takes ({', '.join((*ABLATION_FACTORS, 'labels'))}; labels: {', '.join(LABEL_VARIANTS)}); yours replace the default",
    )


BLOCKS = (
    TrainingConfig,
    SplitSettings,
    DetectionSettings,
    SimulationSettings,
    CollectSettings,
    PolicySettings,
    MultiModelSettings,
    AblationSettings,
)


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
    """Every ``(class, field)`` held by a config block, in class and field order, each key once (the
    policy's ``seed`` and ``horizon`` are the ``collect`` block's own)."""
    held = [(kind, f) for kind in BLOCKS for f in fields(kind) if section_of(kind, f) == block]
    return [(kind, f) for index, (kind, f) in enumerate(held) if f.name not in [other.name for _, other in held[:index]]]


def flag_of(setting: Field) -> str | None:
    """The command-line flag of a field (``--epochs``, ``--val-fraction``); None for a key with no flag."""
    if setting.metadata["flag"] is False:
        return None
    return setting.metadata["flag"] or "--" + setting.name.replace("_", "-")


def dest_of(setting: Field) -> str:
    """The attribute argparse stores the flag's value in (``args.positive_fraction_of_max``)."""
    return flag_of(setting)[2:].replace("-", "_")


def default_of(setting: Field):
    """The field's default (a fresh list for list fields); ``MISSING`` for a key with none."""
    return setting.default_factory() if setting.default_factory is not MISSING else setting.default


def defaults(kind) -> dict:
    """A settings class's keys and their defaults (the keys that have one)."""
    return {f.name: default_of(f) for f in fields(kind) if default_of(f) is not MISSING}


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
        options = {"dest": dest_of(setting), **_argument_type(type_of(kind, setting))}
        default = default_of(setting)
        if default is MISSING:
            options.update(required=True, nargs="+" if options.get("nargs") else None)
        else:
            options["default"] = json.dumps(default) if options.get("metavar") == "JSON" else default
        if setting.metadata["choices"]:
            options["choices"] = setting.metadata["choices"]
        action = parser.add_argument(flag_of(setting), *setting.metadata["aliases"], **options)
        # Set after construction: some Python versions' BooleanOptionalAction append a default of their own.
        action.help = setting.metadata["help"] + ("" if action.required else " (default: %(default)s)")
    return parser


def _argument_type(annotation) -> dict:
    """argparse options for a field type: --x/--no-x for booleans, ``nargs="*"`` for lists, a JSON
    object's text for mappings (the command reads it: :func:`vlarisk.core.spec_options.json_object`)."""
    parts = [part for part in _parts(annotation) if part is not type(None)]
    if parts == [bool]:
        # --normalize / --no-normalize: the guide's plain `--normalize` and `--bf16` still work
        return {"action": argparse.BooleanOptionalAction}
    if any(part is dict or typing.get_origin(part) is dict for part in parts):
        return {"type": str, "metavar": "JSON"}
    listed = [part for part in parts if typing.get_origin(part) in (list, tuple)]
    if listed:
        return {"type": typing.get_args(listed[0])[0], "nargs": "*"}
    (single,) = parts
    return {"type": single}


def config_from_args(args: argparse.Namespace, kind=TrainingConfig):
    """The settings of parsed flags (see :func:`add_arguments`)."""
    return kind(**{setting.name: getattr(args, dest_of(setting)) for setting in fields(kind) if flag_of(setting)})


def tasks_argument(value):
    """A task-list flag's value as the split takes it: ``auto``, or the list of task ids."""
    return AUTO if value in (AUTO, [AUTO]) else list(value)


def block_flags(kind, settings: Mapping, names: Iterable[str] | None = None, **sections: Mapping) -> str:
    """The flags that give a command the settings ``settings`` of ``kind``'s block, in field order.

    Fields kept in another config block (``positive_fraction_of_max`` under ``evaluation``) are read
    from that block, passed by name: ``block_flags(TrainingConfig, training, evaluation=...)``. A
    field found nowhere, set to None, or that is no flag is left to the command's default (the field's);
    ``names``: only those fields' flags. A mapping is passed as its JSON text.
    """
    known = [f.name for f in settings_of(kind, kind.BLOCK)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"unknown {kind.BLOCK} setting(s) {unknown}; known: {known}")
    blocks = {kind.BLOCK: settings, **sections}
    flags = []
    for setting in fields(kind):
        block = blocks.get(section_of(kind, setting), {})
        if setting.name not in block or block[setting.name] is None or not flag_of(setting) or names and setting.name not in names:
            continue
        value, flag = block[setting.name], flag_of(setting)
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            flags.append(" ".join([flag, *(shlex.quote(str(item)) for item in value)]))
        elif isinstance(value, Mapping):
            flags.append(f"{flag} {shlex.quote(json.dumps(value, sort_keys=True))}")
        else:
            flags.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(flags)


def training_flags(settings: Mapping, **sections: Mapping) -> str:
    """The flags that give a training command ``settings`` (a pipeline ``training`` block); see :func:`block_flags`."""
    return block_flags(TrainingConfig, settings, **sections)


# ------------------------------------------------------------------------------------ schema
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", type(None): "null", dict: "object"}


def value_schema(kind, setting: Field) -> dict:
    """The JSON schema of one field's value: its type and the field's own constraints (a ``block``
    entry: that config block's schema, with no defaults)."""
    own = copy.deepcopy(dict(setting.metadata["schema"]))
    if "oneOf" in own or "$ref" in own:
        return own
    if "block" in own:
        return block_schema(own["block"], with_defaults=False)
    if setting.metadata["choices"]:
        return {"enum": list(setting.metadata["choices"])}
    parts = [_type_schema(part) for part in _parts(type_of(kind, setting))]
    names = [part.pop("type") for part in parts]
    schema = {"type": names[0] if len(names) == 1 else names}
    for part in parts:
        schema.update(part)
    if "items" in schema:
        return {**schema, **own, "items": {**schema["items"], **own.get("items", {})}}
    return {**schema, **own}


def _type_schema(annotation) -> dict:
    """The JSON schema of a type: ``list[int]`` an array of integers, ``tuple[float, float]`` an array of
    two numbers, ``dict`` an object."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        items = typing.get_args(annotation)
        sized = {} if origin is list or items[-1] is Ellipsis else {"minItems": len(items), "maxItems": len(items)}
        return {"type": "array", "items": {"type": _JSON_TYPES[items[0]]}, **sized}
    return {"type": _JSON_TYPES[origin or annotation]}


def block_schema(block: str, with_defaults: bool) -> dict:
    """The JSON schema of a config block; ``with_defaults``: each key's default as well (for the block
    itself, which Snakemake's ``validate`` fills), not for blocks of overrides of it."""
    properties, required = {}, []
    for kind, setting in block_fields(block):
        properties[setting.name] = value_schema(kind, setting)
        if with_defaults and default_of(setting) is not MISSING:
            properties[setting.name]["default"] = default_of(setting)
        if setting.metadata["required"]:
            required.append(setting.name)
    return {"type": "object", "additionalProperties": False, "properties": properties, **({"required": required} if required else {})}


# -------------------------------------------------------------------------------- values
_BOUNDS = {
    "minimum": (operator.ge, ">="),
    "exclusiveMinimum": (operator.gt, ">"),
    "maximum": (operator.le, "<="),
    "exclusiveMaximum": (operator.lt, "<"),
}
_PYTHON_TYPES = {"integer": numbers.Integral, "number": numbers.Real, "array": (list, tuple), "string": str, "boolean": bool}


def check_values(settings) -> None:
    """Raise ``ValueError`` naming the field for a value its schema refuses (bounds, choices, lengths, items):
    settings made in Python are held to the constraints the config schema holds the config to."""
    for setting in fields(settings):
        _check(setting.name, getattr(settings, setting.name), value_schema(type(settings), setting))


def _check(name: str, value, schema: Mapping) -> None:
    if value is None:
        return
    if "oneOf" in schema:
        if not any(_matches(value, branch) for branch in schema["oneOf"]):
            raise ValueError(f"{name} must be {schema.get('description', json.dumps(schema['oneOf']))}, got {value!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        raise ValueError(f"{name} must be one of {schema['enum']}, got {value!r}")
    if isinstance(value, (list, tuple)):
        low, high = schema.get("minItems", 0), schema.get("maxItems", len(value))
        if not low <= len(value) <= high:
            raise ValueError(f"{name} needs {low if low == high else f'{low} to {high}'} values, got {len(value)}")
        if schema.get("uniqueItems") and len({repr(item) for item in value}) < len(value):
            raise ValueError(f"{name} must not repeat a value, got {value!r}")
        for item in value:
            _check(f"{name} values", item, schema.get("items", {}))
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        for key, (holds, sign) in _BOUNDS.items():
            if key in schema and not holds(value, schema[key]):
                raise ValueError(f"{name} must be {sign} {schema[key]}, got {value!r}")


def _matches(value, schema: Mapping) -> bool:
    """Whether ``value`` has the schema's type and meets its constraints."""
    if not isinstance(value, _PYTHON_TYPES[schema["type"]]):
        return False
    try:
        _check("", value, schema)
    except ValueError:
        return False
    return True


# -------------------------------------------------------------------------------------- docs
def settings_table(block: str) -> str:
    """A block's settings as a Markdown table: key, default, flag, meaning."""
    rows = ["| key | default | flag | meaning |", "| --- | --- | --- | --- |"]
    for kind, setting in block_fields(block):
        flag = " ".join(f"`{name}`" for name in (flag_of(setting), *setting.metadata["aliases"]) if name) or "(pipeline only)"
        if hasattr(kind, "OPTION"):
            flag = f"a key of `{kind.OPTION}`"
        meaning = setting.metadata["help"].replace("%%", "%").replace("|", "\\|")
        if setting.metadata["choices"]:
            meaning += f" (one of {', '.join(setting.metadata['choices'])})"
        default = f"`{_yaml_value(default_of(setting))}`"
        if setting.metadata["required"]:
            default = "(required)" if default_of(setting) is MISSING else f"{default}, required in a config"
        rows.append(f"| `{setting.name}` | {default} | {flag} | {meaning} |")
    return "\n".join(rows)


def _yaml_value(value) -> str:
    """A default as the config file writes it."""
    if value is MISSING:
        return "unset"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_yaml_value(item)}" for key, item in value.items()) + "}"
    return str(value)
