"""What the pipeline builds, planned in plain Python: paths, settings, the ablation grid, targets.

The rule files (``rules/*.smk``) hold the rules only; every decision about *which* files exist and
*what settings* a job gets is made here, from the validated pipeline config, so it can be tested by
calling functions (``tests/test_planning.py``) rather than by reading dry runs.

* :class:`Paths` says where one config's files go (``results/`` or an experiment's folder): each
  method returns the path of one file, or its pattern when given wildcards:
  ``paths.dataset_path("{source}")``.
* :class:`Plan` (its paths: ``plan.paths``) answers the config's questions: sources, multi-model groups, each job's training
  settings, the ablation cells, the tables and figures, the targets of ``all`` and ``paper``.
* :func:`mem_mb_for` and :func:`runtime_for` size the cluster jobs (:data:`RESOURCE_TABLE`).

The module keeps no state: everything a config decides lives on its :class:`Plan`. Like
:mod:`vlarisk.workflow.config_checks`, it imports nothing of the package but :mod:`vlarisk.core.settings` (and not
torch), so the Snakefile imports it on every run at no cost.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from vlarisk.core.settings import (
    ABLATION_FACTORS,
    ALL_SOURCES,
    CollectSettings,
    DetectionSettings,
    SplitSettings,
    TrainingConfig,
    block_flags,
    defaults,
)
from vlarisk.data.documents import BASELINE_SCORES_SUFFIX, BEST_MODEL, LATEST_CHECKPOINT, RESULTS_FILE
from vlarisk.report.table_registry import PAPER_TABLES, PREDICTIONS_INPUTS

RESULTS_BASE = "results"
EXPERIMENTS = "experiments"
DATA_BLOCKS = ("sources", "split")  # what rollouts, datasets and splits are made from, with detection.alpha
# The `collect` keys that fix a collected source's policy (train_policy), and those of its collection after it.
POLICY_KEYS = ("env", "tasks", "seed", "horizon", "policy")
COLLECTION_KEYS = ("episodes", "max_labelled_failures", "mix")
TABLE_FORMATS = ("md", "tex", "csv", "json", "html")  # html last: the copy shown in the report
# The splits a source's baselines are fitted on (Paths.baselines_path): the plain split the single and
# multi-source models are scored on, and each ablation seed's (seed-<seed>).
PLAIN_SPLIT = "plain"
SEED_SPLIT_PREFIX = "seed-"
BASELINES_SPLIT_PATTERN = rf"{PLAIN_SPLIT}|{SEED_SPLIT_PREFIX}\d+"


def results_root(config: Mapping) -> str:
    """The folder of a config's outputs: ``results``, or ``results/experiments/<name>`` when the
    config selects a named experiment (``experiment: <name>``)."""
    name = config.get("experiment")
    return f"{RESULTS_BASE}/{EXPERIMENTS}/{name}" if name else RESULTS_BASE


def data_root(config: Mapping) -> str:
    """The folder of a config's rollouts, prepared datasets and splits: the plain run's ``results``
    unless the selected experiment sets what they are made from (``sources``, ``split``,
    ``detection.alpha``, which the split records). Experiments of training settings thus share
    them with the plain run and each other: only training and later steps run for them."""
    name = config.get("experiment")
    layer = (config.get("experiments") or {}).get(name) or {} if name else {}
    changes_data = any(block in layer for block in DATA_BLOCKS) or "alpha" in (layer.get("detection") or {})
    return results_root(config) if changes_data else RESULTS_BASE


# ---------------------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class Paths:
    """Where one config's files go: each method returns the path of one file, or its pattern when
    given wildcards (``paths.dataset_path("{source}")``). ``results`` holds the outputs (``results``
    or an experiment's folder), ``data`` the rollouts, datasets and splits (:func:`data_root`)."""

    results: str = RESULTS_BASE
    data: str = RESULTS_BASE

    @classmethod
    def for_config(cls, config: Mapping) -> Paths:
        return cls(results_root(config), data_root(config))

    @staticmethod
    def comparison_path(extension: str) -> str:
        """The table comparing every run found under results/ (all experiments), in one format."""
        return f"{RESULTS_BASE}/comparison/runs.{extension}"

    @property
    def summary(self) -> str:
        """The verdict of the run (vlarisk.report.summary), as Markdown."""
        return f"{self.results}/summary.md"

    @property
    def summary_html(self) -> str:
        """The same verdict as a page, shown in the report."""
        return f"{self.results}/summary.html"

    def rollout_path(self, source: str, outcome: str) -> str:
        """Simulated rollouts of one outcome (``success`` or ``failure``)."""
        return f"{self.data}/rollouts/{source}/{outcome}_rollouts.pkl"

    def planting_path(self, source: str) -> str:
        """The planted directions of a simulated source (for the planted-direction scorer)."""
        return f"{self.data}/rollouts/{source}/planting.npz"

    def collected_path(self, source: str, name: str) -> str:
        """A file of a collected physics source: its rollout pickles, ``collection.json``, ``policy.pt``."""
        return f"{self.data}/physics/{source}/{name}"

    def dataset_path(self, source: str, variant: str = "dataset") -> str:
        """A prepared dataset: ``dataset`` (the source's own labels) or ``heuristic`` (heuristic labels)."""
        return f"{self.data}/datasets/{source}/{variant}.vlarisk"

    def same_rollouts_path(self, source: str) -> str:
        """The record that the heuristic dataset numbers the source's rollouts alike."""
        return f"{self.data}/datasets/{source}/heuristic.same_rollouts.txt"

    def split_path(self, source: str, seed=None, task_split=None) -> str:
        """The source's split; with ``seed``, the split an ablation seed trains on (seeds vary the split
        too); with ``task_split``, one of the extra leave-tasks-out splits (1, 2, ...)."""
        if task_split is not None:
            return f"{self.data}/splits/{source}.task-split-{task_split}.json"
        return f"{self.data}/splits/{source}.json" if seed is None else f"{self.data}/splits/{source}.seed-{seed}.json"

    def baselines_path(self, source: str, split: str) -> str:
        """The source's baselines on one of its splits (``plain``, or ``seed-<seed>`` of an ablation
        seed), fitted once for every model scored on it; their scores are :meth:`baselines_scores_path`."""
        return f"{self.results}/baselines/{source}/{split}.json"

    def baselines_scores_path(self, source: str, split: str) -> str:
        return self.baselines_path(source, split).removesuffix(".json") + BASELINE_SCORES_SUFFIX

    def model_dir(self, source: str, task_split=None) -> str:
        """The single-source model's directory (checkpoints, results, test predictions); with
        ``task_split``, the directory of the model trained on that extra task split."""
        folder = f"{self.results}/models/{source}"
        return folder if task_split is None else f"{folder}/task-split-{task_split}"

    def multi_dir(self, group: str) -> str:
        """A multi-model group's directory (data config, checkpoints, results)."""
        return f"{self.results}/multi/{group}"

    def ablation_dir(self, source: str, cell: str, seed) -> str:
        """One ablation cell and seed's directory (checkpoints, results)."""
        return f"{self.results}/ablations/{source}/{cell}/seed-{seed}"

    @staticmethod
    def best_model(run_dir: str) -> str:
        return f"{run_dir}/{BEST_MODEL}"

    @staticmethod
    def latest_model(run_dir: str) -> str:
        return f"{run_dir}/{LATEST_CHECKPOINT}"

    @staticmethod
    def results_json(run_dir: str) -> str:
        return f"{run_dir}/{RESULTS_FILE}"

    @staticmethod
    def predictions_path(run_dir: str) -> str:
        return f"{run_dir}/test_predictions.npz"

    def data_config_path(self, group: str) -> str:
        return f"{self.multi_dir(group)}/data_config.json"

    def log_path(self, rule: str, name: str) -> str:
        return f"{self.results}/logs/{rule}/{name}.log"

    def benchmark_path(self, rule: str, name: str) -> str:
        return f"{self.results}/benchmarks/{rule}/{name}.tsv"

    def data_log_path(self, rule: str, name: str) -> str:
        """The log of a rule making rollouts, datasets or splits: beside them (shared by experiments)."""
        return f"{self.data}/logs/{rule}/{name}.log"

    def data_benchmark_path(self, rule: str, name: str) -> str:
        return f"{self.data}/benchmarks/{rule}/{name}.tsv"

    def resume_dir(self, rule: str, name: str) -> str:
        """Where a training job keeps its per-epoch checkpoints while it runs (``--resume-dir``).

        Not a declared output: Snakemake deletes a failed job's outputs, but not this, so a retry
        (after a TIMEOUT or a kill) continues from the last finished epoch. Emptied when training ends.
        """
        return f"{self.results}/.resume/{rule}/{name}"

    def table_prefix(self, name: str) -> str:
        """A table's path without extension; :data:`TABLE_FORMATS` are its files."""
        return f"{self.results}/paper/tables/{name}"

    def table_path(self, name: str, extension: str) -> str:
        return f"{self.table_prefix(name)}.{extension}"

    def figure_path(self, kind: str, name: str) -> str:
        """A figure: ``roc_pr``/``training`` per source, ``ablation`` per factor."""
        return f"{self.results}/paper/figures/{kind}/{name}.png"


# ---------------------------------------------------------------------------- the ablation grid
# Factors that are training settings (vlarisk.core.settings.TrainingConfig fields); `labels` is not:
# it changes the training data.
ABLATION_CELL_PATTERN = r"default|[a-z_]+-[A-Za-z0-9_.]+"


def ablation_value_slug(factor: str, value) -> str:
    """Readable path component of a factor's value: 512x256, linear, on/off, bce, 0.1."""
    if factor == "hidden_dims":
        return "x".join(str(width) for width in value) or "linear"
    if factor == "normalize":
        return "on" if value else "off"
    return str(value)


def cli_pairs(option: str, mapping: Mapping[str, str]) -> str:
    """`--option KEY PATH` for each entry, shell-quoted."""
    return " ".join(f"{option} {shlex.quote(k)} {shlex.quote(v)}" for k, v in mapping.items())


def cli_runs(runs) -> str:
    """`--run SOURCE VALUE PATH` for each ablation run, shell-quoted."""
    return " ".join(f"--run {shlex.join(run)}" for run in runs)


# ------------------------------------------------------------------------------------- the plan
class Plan:
    """The pipeline's plan for one validated config (schema defaults filled in, as Snakemake does).

    Raises ``ValueError`` on what the schema cannot check: a multi-model group or the ablations
    naming an unconfigured source, a multi-model without a hidden layer to share.

    Defaults name no source: a multi-model group listed as ``all`` has every configured source
    (and is left out when fewer than two are configured), and the ablations run on the first
    source unless ``ablations.sources`` names others.
    """

    def __init__(self, config: Mapping):
        self.config = config
        self.paths = Paths.for_config(config)
        self.sources = list(config["sources"])
        multi_model = config.get("multi_model") or {}
        self.multi_groups = {
            group: list(self.sources if members == ALL_SOURCES else members)
            for group, members in (multi_model.get("groups") or {}).items()
            if members != ALL_SOURCES or len(self.sources) > 1
        }
        self.multi_overrides = dict(multi_model.get("training") or {})
        ablations = config.get("ablations") or {}  # no block: no ablations (a given block has the schema's defaults)
        self.ablation_sources = list(ablations.get("sources", self.sources[:1]))
        self.ablation_seeds = list(ablations.get("seeds", []))
        self.ablation_factor_values = dict(ablations.get("factors", {}))
        self.ablation_overrides = dict(ablations.get("training", {}))
        self._check()

    def _check(self) -> None:
        if self.multi_groups and not self.multi_training_settings()["hidden_dims"]:
            raise ValueError(
                "multi_model: hidden_dims is empty; a multi-model needs at least one hidden layer (set multi_model.training.hidden_dims)"
            )
        for group, members in self.multi_groups.items():
            unknown = [member for member in members if member not in self.sources]
            if unknown:
                raise ValueError(f"multi_model.groups.{group} names unknown source(s) {unknown}; configured sources are {self.sources}")
        unknown = sorted(set(self.ablation_sources) - set(self.sources))
        if unknown:
            raise ValueError(f"ablations.sources names unconfigured sources: {unknown}")
        if self.n_task_splits > 1 and self.split_settings()["held_out_tasks"] != "auto":
            raise ValueError(
                f"split.n_task_splits is {self.n_task_splits} but split.held_out_tasks is a fixed list: "
                "several task splits need held_out_tasks: auto"
            )

    # ---------------------------------------------------------------- wildcard constraints
    @property
    def source_pattern(self) -> str:
        return "|".join(self.sources) if self.sources else "none"

    @property
    def group_pattern(self) -> str:
        return "|".join(self.multi_groups) or "none"

    @property
    def factor_pattern(self) -> str:
        return "|".join(self.ablation_factor_values) or "none"

    # ---------------------------------------------------------------------------- sources
    def source_config(self, source: str) -> dict:
        return self.config["sources"][source]

    def is_simulated(self, source: str) -> bool:
        return "simulate" in self.source_config(source)

    def is_collected(self, source: str) -> bool:
        """Whether the source is collected in a physics simulator (a `collect` block)."""
        return "collect" in self.source_config(source)

    def rollout_files(self, source: str) -> dict:
        """The source's rollout pickles: simulated or collected under results/, or the user's own files."""
        if self.is_simulated(source):
            return {outcome: self.paths.rollout_path(source, outcome) for outcome in ("success", "failure")}
        if self.is_collected(source):
            return {outcome: self.paths.collected_path(source, f"{outcome}_rollouts.pkl") for outcome in ("success", "failure")}
        entry = self.source_config(source)
        return {"success": entry["success"], "failure": entry["failure"]}

    def planting_file(self, source: str) -> dict:
        """``{"planting": path}`` for a simulated source, ``{}`` for real data."""
        return {"planting": self.paths.planting_path(source)} if self.is_simulated(source) else {}

    def labelling_flag(self, source: str, variant: str) -> str:
        """prepare_training_data.py's labelling flag for a dataset variant of the source."""
        if variant == "heuristic":
            return "--heuristic-labels"
        return "--require-labels" if self.source_config(source).get("require_labels") else ""

    def has_provided_labels(self, source: str) -> bool:
        """Whether every step of the source carries per_dim_risk (the labels factor needs it)."""
        if self.is_simulated(source):
            return self.source_config(source)["simulate"].get("with_labels", True)
        return self.is_collected(source) or self.source_config(source).get("require_labels", False)

    def policy_flags(self, source: str) -> str:
        """collect_rollouts.py's flags that fix a collected source's policy: env, tasks, seed, horizon, policy settings."""
        block = {**defaults(CollectSettings), **self.source_config(source)["collect"]}
        return block_flags(CollectSettings, block, names=POLICY_KEYS)

    def collect_flags(self, source: str) -> str:
        """collect_rollouts.py's flags for a collected source's `collect` block (the policy is an input)."""
        block = self.source_config(source)["collect"]
        return self.policy_flags(source) + " " + block_flags(CollectSettings, block, names=COLLECTION_KEYS)

    # --------------------------------------------------------------------------- settings
    def training_settings(self, source: str, **overrides) -> dict:
        """The `training` block, then the source's own, then explicit overrides."""
        return {**self.config["training"], **self.source_config(source).get("training", {}), **overrides}

    def multi_training_settings(self) -> dict:
        """The `training` block, then the `multi_model.training` overrides."""
        return {**self.config["training"], **self.multi_overrides}

    @property
    def evaluation(self) -> dict:
        """The `evaluation` block (settings kept outside `training`, e.g. positive_fraction_of_max)."""
        return self.config.get("evaluation", {})

    def train_command_flags(self, training: Mapping) -> str:
        """Every settings flag of a training rule's command (single, task-split, multi-model, ablation
        cell) for its ``training`` settings: those, the `evaluation` block's, the `detection` block's (alarm level)."""
        return f"{block_flags(TrainingConfig, training, evaluation=self.evaluation)} {self.detection_flags}".strip()

    @property
    def score_command_flags(self) -> str:
        """Every settings flag of a scoring rule's command (the evaluations, score_baselines): the
        `evaluation` and `detection` blocks' (a model and its baselines scored alike)."""
        return f"{block_flags(TrainingConfig, {}, evaluation=self.evaluation)} {self.detection_flags}".strip()

    @property
    def detection_flags(self) -> str:
        """The `detection` block as flags of the training (alarm level) and evaluation commands."""
        return block_flags(DetectionSettings, self.config.get("detection", {}))

    @property
    def alpha(self) -> float:
        """The alarm level: `detection.alpha`."""
        return float(self.config.get("detection", {}).get("alpha", DetectionSettings.alpha))

    def split_settings(self) -> dict:
        """The `split` block with every key (absent ones at their defaults)."""
        return {**defaults(SplitSettings), **self.config["split"]}

    def split_flags(self, seed=None, task_split: int = 0) -> str:
        """The `split` block as flags of split_dataset.py (its seed replaced by ``seed`` when given;
        ``task_split``: which leave-tasks-out split), with the alarm level its count is checked for."""
        split = {**self.config["split"], **({} if seed is None else {"seed": int(seed)})}
        return f"{block_flags(SplitSettings, split)} --task-split {int(task_split)} --alpha {self.alpha}"

    # ------------------------------------------------------------------------ task splits
    @property
    def n_task_splits(self) -> int:
        """How many leave-tasks-out splits each source is trained and scored on (`split.n_task_splits`)."""
        return int(self.split_settings()["n_task_splits"])

    def extra_task_splits(self) -> list[int]:
        """The task splits beyond the plain one (1, 2, ...), each with its own split file and model."""
        return list(range(1, self.n_task_splits))

    def task_split_results(self, source: str) -> list[str]:
        """results.json of the source's extra task splits: inputs of its main evaluation, which adds
        their detection numbers (per split, mean and SD) to the main results.json."""
        return [self.paths.results_json(self.paths.model_dir(source, k)) for k in self.extra_task_splits()]

    def split_files(self, source: str) -> list[str]:
        """Every split file the source's models train on: the plain split, then the extra task splits."""
        return [self.paths.split_path(source), *(self.paths.split_path(source, task_split=k) for k in self.extra_task_splits())]

    # --------------------------------------------------------------------------- baselines
    def baselines_split_file(self, source: str, split: str) -> str:
        """The split file a baselines file is fitted on (:meth:`Paths.baselines_path`'s ``split``)."""
        return (
            self.paths.split_path(source) if split == PLAIN_SPLIT else self.paths.split_path(source, split.removeprefix(SEED_SPLIT_PREFIX))
        )

    def multi_baselines(self, group: str) -> list[str]:
        """Each member's baselines on its plain split: a multi-model group's scoring reads them."""
        return [self.paths.baselines_path(source, PLAIN_SPLIT) for source in self.multi_groups[group]]

    # -------------------------------------------------------------------------- multi-model
    def multi_member_files(self, group: str) -> dict:
        """Each member's dataset and split, and the planting records of simulated members."""
        members = self.multi_groups[group]
        return {
            "data": [self.paths.dataset_path(source) for source in members],
            "splits": [self.paths.split_path(source) for source in members],
            "plantings": [self.paths.planting_path(source) for source in members if self.is_simulated(source)],
        }

    def multi_data_config(self, group: str) -> list[dict]:
        """The group's data-config entries: the guide's fields plus split and planting paths."""
        entries = []
        for source in self.multi_groups[group]:
            entry = {
                "model_name": source,
                "data_path": self.paths.dataset_path(source),
                "split_path": self.paths.split_path(source),
                "description": f"source {source} of multi-model group {group}",
            }
            if self.is_simulated(source):
                entry["planting_path"] = self.paths.planting_path(source)
            entries.append(entry)
        return entries

    # ------------------------------------------------------------------------- ablations
    def ablation_baseline(self, source: str) -> dict:
        """Training settings every cell of the source starts from."""
        return self.training_settings(source, **self.ablation_overrides)

    def ablation_baseline_value(self, source: str, factor: str):
        """The value a factor takes in the default cell."""
        return "provided" if factor == "labels" else self.ablation_baseline(source)[factor]

    def ablation_factor_cells(self, source: str, factor: str) -> list[tuple]:
        """(value, cell) pairs of a factor in config order, the default value included (first when
        the config's list omits it). Empty for the labels factor on a source whose steps do not
        all carry provided labels."""
        if factor == "labels" and not self.has_provided_labels(source):
            return []
        default = self.ablation_baseline_value(source, factor)
        values = self.ablation_factor_values[factor]
        return [
            (value, "default" if value == default else f"{factor}-{ablation_value_slug(factor, value)}")
            for value in (values if default in values else [default, *values])
        ]

    def ablation_cells(self, source: str) -> dict:
        """Cell name -> (factor, value) of the source's grid; `default` -> (None, None)."""
        cells = {"default": (None, None)}
        for factor in self.ablation_factor_values:
            cells.update((cell, (factor, value)) for value, cell in self.ablation_factor_cells(source, factor) if cell != "default")
        return cells

    def ablation_runs(self, factor: str) -> list[tuple[str, str, str]]:
        """(source, value label, results.json) for every seed of every cell of one factor."""
        return [
            (
                source,
                f"{ablation_value_slug(factor, value)}{' (default)' if cell == 'default' else ''}",
                self.paths.results_json(self.paths.ablation_dir(source, cell, seed)),
            )
            for source in self.ablation_sources
            for value, cell in self.ablation_factor_cells(source, factor)
            for seed in self.ablation_seeds
        ]

    def ablation_run_files(self, factor: str) -> list[str]:
        """results.json files of one factor's cells (the input of its table and chart)."""
        return [path for _, _, path in self.ablation_runs(factor)]

    def ablation_run_args(self, factor: str) -> str:
        """The same runs as `--run SOURCE VALUE PATH` arguments of make_tables/make_figures.py."""
        return cli_runs(self.ablation_runs(factor))

    def ablation_factors(self) -> list[str]:
        """Factors with at least one cell (labels is dropped when no ablated source has labels)."""
        return [factor for factor in self.ablation_factor_values if self.ablation_runs(factor)]

    def ablation_results(self) -> list[str]:
        """Every results.json of the grid, each once (none without ablated factors)."""
        paths = [path for factor in self.ablation_factors() for path in self.ablation_run_files(factor)]
        return list(dict.fromkeys(paths))

    def ablation_cell_settings(self, source: str, cell: str) -> dict:
        """The training settings every seed of the cell shares: baseline and the varied factor (no seed)."""
        factor, value = self.ablation_cells(source)[cell]
        varied = {factor: value} if factor in ABLATION_FACTORS else {}
        settings = self.training_settings(source, **{**self.ablation_overrides, **varied})
        settings.pop("seed", None)
        return settings

    def ablation_settings(self, source: str, cell: str, seed) -> dict:
        """One seed's training settings: the cell's, and the seed."""
        return {**self.ablation_cell_settings(source, cell), "seed": int(seed)}

    def ablation_seed_flags(self, source: str, cell: str, step: str) -> str:
        """The per-seed flags of a cell's ``train`` or ``evaluate`` command, ``{seed}`` standing for
        the seed (workflow_scripts/*_ablation_cell.py run the command once per seed)."""
        run_dir, split = self.paths.ablation_dir(source, cell, "{seed}"), shlex.quote(self.paths.split_path(source, "{seed}"))
        if step == "train":
            resume = self.paths.resume_dir("train_ablation", f"{source}/{cell}/seed-{{seed}}")
            return f"--seed {{seed}} --split {split} --output-dir {shlex.quote(run_dir)} --resume-dir {shlex.quote(resume)}"
        return (
            f"--checkpoint {shlex.quote(self.paths.best_model(run_dir))} --history {shlex.quote(self.paths.latest_model(run_dir))} --split {split}"
            f" --output {shlex.quote(self.paths.results_json(run_dir))} --predictions {shlex.quote(self.paths.predictions_path(run_dir))}"
            f" --baselines {shlex.quote(self.paths.baselines_path(source, SEED_SPLIT_PREFIX + '{seed}'))}"
        )

    def ablation_training_data(self, source: str, cell: str) -> dict:
        """The source's dataset, or for labels-heuristic its heuristic-labelled twin (checked)."""
        if self.ablation_cells(source)[cell] != ("labels", "heuristic"):
            return {"data": self.paths.dataset_path(source)}
        return {"data": self.paths.dataset_path(source, "heuristic"), "same_rollouts": self.paths.same_rollouts_path(source)}

    # ------------------------------------------------------------------------------ paper
    def single_results(self) -> dict:
        """Source -> results.json of its single-source model."""
        return {source: self.paths.results_json(self.paths.model_dir(source)) for source in self.sources}

    def multi_results(self) -> dict:
        """Group -> results.json of each configured multi-model group (none without `multi_model`)."""
        return {group: self.paths.results_json(self.paths.multi_dir(group)) for group in self.multi_groups}

    def predictions_by_source(self) -> dict:
        """Source -> test predictions of its single-source model."""
        return {source: self.paths.predictions_path(self.paths.model_dir(source)) for source in self.sources}

    def table_input(self, table: str) -> dict:
        """Input files of one main table."""
        if PAPER_TABLES[table].inputs == PREDICTIONS_INPUTS:
            return {"predictions": list(self.predictions_by_source().values())}
        return {"single": list(self.single_results().values()), "multi": list(self.multi_results().values())}

    def table_command(self, table: str) -> str:
        """make_tables.py subcommand, fixed flags and inputs of one main table (:data:`PAPER_TABLES`)."""
        made = PAPER_TABLES[table]
        if made.inputs == PREDICTIONS_INPUTS:
            inputs = cli_pairs("--predictions", self.predictions_by_source())
        else:
            inputs = f"{cli_pairs('--single', self.single_results())} {cli_pairs('--multi', self.multi_results())}"
        return " ".join([made.subcommand, *made.flags, inputs])

    def paper_tables(self) -> list[str]:
        """Every table file: the main tables and one per ablated factor, in each format."""
        names = [*PAPER_TABLES, *(f"ablation_{factor}" for factor in self.ablation_factors())]
        return [self.paths.table_path(name, extension) for name in names for extension in TABLE_FORMATS]

    def paper_figures(self) -> list[str]:
        """Every figure: curves and failure detection of each single model, a bar chart per ablated factor."""
        curves = [self.paths.figure_path(kind, source) for kind in ("roc_pr", "training", "detection") for source in self.sources]
        return curves + [self.paths.figure_path("ablation", factor) for factor in self.ablation_factors()]

    # ------------------------------------------------------------------------- comparison
    def comparison_runs(self, found: list[str]) -> list[str]:
        """The results.json files ``found`` under results/ that the current config does not build
        (other experiments' runs, ablation cells, sources no longer configured): the comparison
        reads them as they are, without asking Snakemake to bring them up to date."""
        own = set(self.all_targets())
        return [path for path in found if path not in own]

    # -------------------------------------------------------------------------- resources
    def resource_override(self, rule: str, name: str):
        """The config's ``resources.<rule>.<name>`` (minutes or MB), or None: the formula applies."""
        return ((self.config.get("resources") or {}).get(rule) or {}).get(name)

    def mem_mb(self, kind: str, rule: str):
        """The memory request of ``rule``'s jobs: :func:`mem_mb_for` ``kind``, or the config's value."""
        return mem_mb_for(kind, self.resource_override(rule, "mem_mb"))

    def runtime(self, kind: str, rule: str, epochs=None, runs: int = 1):
        """The wall-time request of ``rule``'s jobs: :func:`runtime_for` ``kind`` (``epochs``: a
        function of a training job's wildcards; ``runs``: how many runs each job makes one after
        another, an ablation cell's seeds), or the config's value."""
        return runtime_for(kind, epochs, self.resource_override(rule, "runtime"), runs)

    def source_epochs(self, wildcards) -> int:
        """Epochs of a single-source training job (train_model, train_task_split)."""
        return int(self.training_settings(wildcards.source)["epochs"])

    def ablation_epochs(self, wildcards) -> int:
        """Epochs of each seed an ablation cell's training job trains."""
        return int(self.ablation_cell_settings(wildcards.source, wildcards.cell)["epochs"])

    def multi_epochs(self, wildcards) -> int:
        """Epochs of a multi-model group's training job."""
        return int(self.multi_training_settings()["epochs"])

    # ---------------------------------------------------------------------------- targets
    def all_targets(self) -> list[str]:
        """The default target `all`: every single-source model's and multi-model group's results."""
        return [*self.single_results().values(), *self.multi_results().values()]

    def report_figures(self) -> list[str]:
        """The figures `all` adds for its report (cheap, one per single model): failure detection."""
        return [self.paths.figure_path("detection", source) for source in self.sources]

    def paper_targets(self) -> dict[str, list[str]]:
        """The `paper` target's inputs by kind: models, ablations, tables, figures."""
        return {
            "single": list(self.single_results().values()),
            "multi": list(self.multi_results().values()),
            "ablations": self.ablation_results(),
            "tables": self.paper_tables(),
            "figures": self.paper_figures(),
            "attribution": self.attribution_outputs() if self.collected_sources() else [],
        }

    def collected_sources(self) -> list[str]:
        """The sources collected in a physics simulator."""
        return [source for source in self.sources if self.is_collected(source)]

    def attribution_outputs(self) -> list[str]:
        """The paper's attribution table (every format) and figure, over the collected sources."""
        tables = [self.paths.table_path("attribution", extension) for extension in TABLE_FORMATS]
        return [*tables, self.paths.figure_path("attribution", "attribution")]


# ------------------------------------------------------------------------------------ resources
# Resource requests of the rules that may run as cluster jobs. In a rule, naming the kind (and, for
# training, the job's number of epochs and the rule whose config entry may override the formula):
#
#         resources:
#             mem_mb=PLAN.mem_mb("train", "train_model"),
#             runtime=PLAN.runtime("train", "train_model", epochs=lambda wildcards: ...),
#
# Both are callables of (wildcards, input, attempt), so Snakemake evaluates them per job, once the
# job's input exists (before that the value shows as <TBD> in a dry run), and again on each retry:
#
#     mem_mb  = min(cap, (base + per_input_mb * input MB) * attempt)                        [MB]
#     runtime = min(cap, (base + per_input_gb * input GB) * runs * attempt)                [minutes]
#     runtime = min(cap, (base + per_epoch_gb * epochs * input GB) * runs * attempt)       [minutes, training]
#
# "input" counts the files inside an input folder (a prepared dataset is a folder); "runs" is 1 but
# for the ablation rules, whose jobs run every seed of a cell one after another. A job killed
# for memory or time (OUT_OF_MEMORY / TIMEOUT under SLURM) comes back with twice, then three times,
# the request (profiles/slurm sets retries: 2). Locally the values only matter against a
# --resources mem_mb=... limit. The config's `resources: {<rule>: {runtime: M, mem_mb: N}}` replaces
# the formula for every job of that rule (the first attempt's request, still grown per attempt).
#
# Numbers are deliberately generous: measured, one training epoch over a 0.21 GB dataset (101,738
# steps x 4096-D) takes about 6 s on 2 CPU cores (benchmarks/RESULTS.md), i.e. 0.5 min per epoch
# per GB; the table asks for 10 times that (slower nodes, bigger models, validation every epoch).
# Which site limits apply (partition, account, GPU type, QoS) is the profile's business, not this
# table's: see docs/cluster.md.
RESOURCE_TABLE = {
    # kind: rules using it
    #   mem_mb  : base MB, + MB per input MB, cap MB
    #   runtime : base min, + min per input GB (training: per epoch per input GB), cap min
    "simulate": {  # simulate_rollouts: generates data, input is small
        "mem_mb": (2000, 2.0, 32000),
        "runtime": (30, 60, 24 * 60),
    },
    "collect": {  # train_policy, collect_rollouts: CPU simulation, no input to speak of
        "mem_mb": (4000, 0.0, 32000),
        "runtime": (60, 0, 24 * 60),
    },
    "prepare": {  # prepare_dataset: loads all rollouts, writes features
        "mem_mb": (2000, 4.0, 64000),
        "runtime": (20, 60, 12 * 60),
    },
    "train": {  # train_model, train_task_split, train_ablation, train_multi_model (GPU rules)
        "mem_mb": (8000, 4.0, 96000),
        "runtime": (30, 5, 48 * 60),
    },
    "evaluate": {  # score_baselines, evaluate_model, evaluate_task_split, evaluate_ablation, evaluate_multi_model
        "mem_mb": (4000, 3.0, 64000),
        "runtime": (20, 60, 12 * 60),
    },
}


def _folder_mb(path: str) -> float:
    """Size in MB of the files inside a folder (a folder's own entry counts a few KB only)."""
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names) / 2**20


def _input_mb(input) -> float:
    """Total size of a job's input in MB, the files inside input folders included (0 without input).

    ``input.size_mb`` first: while Snakemake builds the plan it raises, and the request shows <TBD>."""
    if not len(input):
        return 0.0
    return input.size_mb + sum(_folder_mb(path) for path in input if os.path.isdir(path))


def _resource_row(kind: str, name: str) -> tuple:
    try:
        return RESOURCE_TABLE[kind][name]
    except KeyError:
        raise ValueError(f"unknown resource kind {kind!r}; expected one of {sorted(RESOURCE_TABLE)}") from None


def mem_mb_for(kind: str, override: int | None = None):
    """Memory request (MB) for rules of this kind, growing with input and attempt; ``override``
    (the config's value for the rule) replaces the formula's first-attempt request."""
    base, per_input_mb, cap = _resource_row(kind, "mem_mb")

    def mem_mb(wildcards, input, attempt):
        if override is not None:
            return int(override * attempt)
        return int(min(cap, (base + per_input_mb * _input_mb(input)) * attempt))

    return mem_mb


def runtime_for(kind: str, epochs=None, override: int | None = None, runs: int = 1):
    """Wall-time request (minutes) for rules of this kind, growing with input and attempt, and for
    training with ``epochs`` (a function of the job's wildcards): training time is epochs x data.
    A job making ``runs`` runs one after another asks for that many times one run's request.
    ``override`` (the config's value for the rule) replaces the formula's first-attempt request."""
    base, per_input_gb, cap = _resource_row(kind, "runtime")

    def runtime(wildcards, input, attempt):
        if override is not None:
            return int(override * attempt)
        factor = per_input_gb * (1 if epochs is None else epochs(wildcards))
        return int(min(cap, (base + factor * _input_mb(input) / 1024) * runs * attempt))

    return runtime
