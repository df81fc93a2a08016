"""The pipeline's plan, by direct calls into vlarisk.workflow.planning (no dry runs): paths, settings, the
ablation grid, multi-model groups, tables, figures and the targets of `all` and `paper`."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from vlarisk.commands.tables import parse_args as parse_table_args
from vlarisk.report import tables
from vlarisk.report.table_registry import PAPER_TABLES
from vlarisk.workflow import planning
from vlarisk.workflow.config_checks import over_defaults, resolve_config
from vlarisk.workflow.planning import Plan

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "config" / "schema" / "config.schema.yaml")


SCHEMA_DOC = yaml.safe_load(Path(SCHEMA).read_text())
DEFAULTS = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def load(path: str = "config/config.yaml", **changes) -> dict:
    """A config as the Snakefile sees it: the file (its top-level keys replaced by ``changes``)
    merged over config/config.yaml, validated, schema defaults filled in."""
    config = yaml.safe_load((ROOT / path).read_text())
    config.update(copy.deepcopy(changes))
    config = resolve_config(over_defaults(DEFAULTS, config), SCHEMA_DOC)
    validate(config, schema=SCHEMA)
    return config


TINY = load("tests/data/tiny_config.yaml")
REAL = {
    "real_a": {
        "success": "data/a/success.pkl",
        "failure": "data/a/failure.pkl",
        "require_labels": True,
        "training": {"epochs": 3, "dropout": 0.2},
    },
    "real_b": {"success": "data/b/success.pkl", "failure": "data/b/failure.pkl"},
    "sim_c": {"simulate": {"hidden_dim": 16, "with_labels": False, "seed": 3}, "training": {"hidden_dims": [64]}},
}


def real_plan(**changes) -> Plan:
    return Plan(load("tests/data/tiny_config.yaml", sources=REAL, **changes))


# ------------------------------------------------------------------------------------ paths
def test_path_helpers_give_files_and_patterns():
    paths = planning.Paths()
    assert paths.dataset_path("a") == "results/datasets/a/dataset.vlarisk"
    assert paths.dataset_path("{source}", "{variant}") == "results/datasets/{source}/{variant}.vlarisk"
    assert paths.split_path("{source}") == "results/splits/{source}.json"
    assert paths.rollout_path("a", "failure") == "results/rollouts/a/failure_rollouts.pkl"
    assert paths.best_model(paths.model_dir("a")) == "results/models/a/best_model.pt"
    assert paths.results_json(paths.multi_dir("g")) == "results/multi/g/results.json"
    assert paths.results_json(paths.ablation_dir("a", "dropout-0.3", 2)) == "results/ablations/a/dropout-0.3/seed-2/results.json"
    assert paths.predictions_path(paths.model_dir("a")) == "results/models/a/test_predictions.npz"
    assert paths.log_path("train_ablation", "a/default") == "results/logs/train_ablation/a/default.log"
    assert paths.table_path("ablation_labels", "csv") == "results/paper/tables/ablation_labels.csv"
    assert paths.figure_path("roc_pr", "a") == "results/paper/figures/roc_pr/a.png"


# ---------------------------------------------------------------------------------- sources
def test_simulated_and_real_sources():
    plan = real_plan()
    assert plan.rollout_files("real_a") == {"success": "data/a/success.pkl", "failure": "data/a/failure.pkl"}
    assert plan.rollout_files("sim_c") == {
        "success": "results/rollouts/sim_c/success_rollouts.pkl",
        "failure": "results/rollouts/sim_c/failure_rollouts.pkl",
    }
    assert plan.planting_file("real_a") == {} and plan.planting_file("sim_c") == {"planting": "results/rollouts/sim_c/planting.npz"}
    assert [plan.labelling_flag(source, "dataset") for source in plan.sources] == ["--require-labels", "", ""]
    assert plan.labelling_flag("real_b", "heuristic") == "--heuristic-labels"
    assert [plan.has_provided_labels(source) for source in plan.sources] == [True, False, False]
    assert Plan(load()).has_provided_labels("synthetic_a")  # simulated: with_labels, true unless said otherwise


def test_training_settings_layer_global_then_source_then_overrides():
    plan = real_plan()
    assert plan.training_settings("real_a")["epochs"] == 3 and plan.training_settings("real_a")["dropout"] == 0.2
    assert plan.training_settings("real_b") == TINY["training"]
    assert plan.training_settings("real_a", epochs=7, seed=4) == {**TINY["training"], "dropout": 0.2, "epochs": 7, "seed": 4}


# ------------------------------------------------------------------------------- multi-model
def test_multi_model_groups():
    plan = real_plan(multi_model={"groups": {"ab": ["real_a", "real_b"], "abc": ["real_a", "real_b", "sim_c"]}, "training": {"epochs": 4}})
    assert plan.multi_training_settings() == {**TINY["training"], "epochs": 4}
    assert plan.multi_member_files("abc") == {
        "data": [
            "results/datasets/real_a/dataset.vlarisk",
            "results/datasets/real_b/dataset.vlarisk",
            "results/datasets/sim_c/dataset.vlarisk",
        ],
        "splits": ["results/splits/real_a.json", "results/splits/real_b.json", "results/splits/sim_c.json"],
        "plantings": ["results/rollouts/sim_c/planting.npz"],
    }
    entries = plan.multi_data_config("abc")
    assert entries[0] == {
        "model_name": "real_a",
        "data_path": "results/datasets/real_a/dataset.vlarisk",
        "split_path": "results/splits/real_a.json",
        "description": "source real_a of multi-model group abc",
    }
    assert entries[2]["planting_path"] == "results/rollouts/sim_c/planting.npz"
    assert plan.all_targets() == [
        "results/models/real_a/results.json",
        "results/models/real_b/results.json",
        "results/models/sim_c/results.json",
        "results/multi/ab/results.json",
        "results/multi/abc/results.json",
    ]
    assert plan.group_pattern == "ab|abc"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"multi_model": {"groups": {"g": ["real_a", "nope"]}}}, r"multi_model.groups.g names unknown source\(s\) \['nope'\]"),
        ({"multi_model": {"groups": {"g": ["real_a"]}, "training": {"hidden_dims": []}}}, "a multi-model needs at least one hidden layer"),
        ({"ablations": {"sources": ["real_a", "nope"]}}, r"ablations.sources names unconfigured sources: \['nope'\]"),
    ],
    ids=["unknown-member", "no-hidden-layer", "unknown-ablated-source"],
)
def test_what_the_schema_cannot_check_fails_at_planning(changes, message):
    with pytest.raises(ValueError, match=message):
        real_plan(**changes)


def test_without_multi_models_or_ablations():
    plan = Plan(load("tests/data/tiny_config.yaml"))
    assert plan.multi_groups == {} and plan.group_pattern == "none" and plan.factor_pattern == "none"
    assert plan.all_targets() == ["results/models/tiny_a/results.json", "results/models/tiny_b/results.json"]
    assert plan.ablation_results() == [] and plan.ablation_factors() == []
    targets = plan.paper_targets()
    assert targets["multi"] == [] and targets["ablations"] == []
    assert len(targets["tables"]) == len(planning.PAPER_TABLES) * 5 and targets["tables"][:2] == [
        "results/paper/tables/auc_per_dimension.md",
        "results/paper/tables/auc_per_dimension.tex",
    ]
    assert targets["figures"] == [
        "results/paper/figures/roc_pr/tiny_a.png",
        "results/paper/figures/roc_pr/tiny_b.png",
        "results/paper/figures/training/tiny_a.png",
        "results/paper/figures/training/tiny_b.png",
        "results/paper/figures/detection/tiny_a.png",
        "results/paper/figures/detection/tiny_b.png",
    ]


# ------------------------------------------------------------------------------ the grid
def test_value_slugs():
    slug = planning.ablation_value_slug
    assert [slug("hidden_dims", v) for v in ([], [256], [1024, 512, 256])] == ["linear", "256", "1024x512x256"]
    assert [slug("normalize", v) for v in (True, False)] == ["on", "off"]
    assert [slug("loss_type", "bce"), slug("dropout", 0.3), slug("labels", "heuristic")] == ["bce", "0.3", "heuristic"]


def test_default_config_grid():
    """docs/paper.md: the default cell plus 9 one-factor changes, x 3 seeds."""
    plan = Plan(load())
    assert plan.ablation_sources == ["synthetic_a"] and plan.ablation_seeds == [0, 1, 2]
    assert list(plan.ablation_cells("synthetic_a")) == [
        "default",
        "loss_type-mse",
        "loss_type-mae",
        "loss_type-huber",
        "hidden_dims-linear",
        "hidden_dims-256",
        "hidden_dims-1024x512x256",
        "dropout-0.0",
        "normalize-off",
        "labels-heuristic",
    ]
    assert len(plan.ablation_results()) == 30
    assert plan.ablation_factors() == ["loss_type", "hidden_dims", "dropout", "normalize", "labels"]
    assert plan.factor_pattern == "loss_type|hidden_dims|dropout|normalize|labels"
    targets = plan.paper_targets()
    assert len(targets["tables"]) == (len(planning.PAPER_TABLES) + 5) * 5 and len(targets["figures"]) == 3 * 3 + 5
    assert targets["single"] + targets["multi"] == plan.all_targets()


def test_a_factor_lists_its_default_value_once_and_first_when_the_config_omits_it():
    plan = Plan(load())
    cells = plan.ablation_factor_cells("synthetic_a", "loss_type")
    assert cells == [("mse", "loss_type-mse"), ("mae", "loss_type-mae"), ("huber", "loss_type-huber"), ("bce", "default")]
    config = load(ablations={"sources": ["synthetic_a"], "factors": {"dropout": [0.0, 0.3]}})
    assert Plan(config).ablation_factor_cells("synthetic_a", "dropout") == [(0.1, "default"), (0.0, "dropout-0.0"), (0.3, "dropout-0.3")]


def test_runs_name_sources_values_and_seeds():
    plan = Plan(load(ablations={"sources": ["synthetic_a"], "seeds": [0, 4], "factors": {"normalize": [True, False]}}))
    assert plan.ablation_runs("normalize") == [
        ("synthetic_a", "on (default)", "results/ablations/synthetic_a/default/seed-0/results.json"),
        ("synthetic_a", "on (default)", "results/ablations/synthetic_a/default/seed-4/results.json"),
        ("synthetic_a", "off", "results/ablations/synthetic_a/normalize-off/seed-0/results.json"),
        ("synthetic_a", "off", "results/ablations/synthetic_a/normalize-off/seed-4/results.json"),
    ]
    assert plan.ablation_run_args("normalize").startswith(
        "--run synthetic_a 'on (default)' results/ablations/synthetic_a/default/seed-0/results.json --run"
    )


def test_cell_settings_baseline_then_factor_then_seed():
    plan = real_plan(
        ablations={
            "seeds": [0, 5],
            "training": {"epochs": 2, "loss_type": "mse"},
            "factors": {"loss_type": ["bce", "mse"], "dropout": [0.5], "labels": ["heuristic"]},
        }
    )
    baseline = {**TINY["training"], "dropout": 0.2, "epochs": 2, "loss_type": "mse"}  # global, real_a's own, ablations.training
    assert plan.ablation_baseline("real_a") == baseline
    assert plan.ablation_settings("real_a", "default", "5") == {**baseline, "seed": 5}
    assert plan.ablation_settings("real_a", "loss_type-bce", "0") == {**baseline, "loss_type": "bce", "seed": 0}
    assert plan.ablation_settings("real_a", "dropout-0.5", "0")["dropout"] == 0.5
    assert plan.ablation_settings("real_a", "labels-heuristic", "0") == {**baseline, "seed": 0}  # data, not settings
    with pytest.raises(KeyError):
        plan.ablation_settings("real_b", "labels-heuristic", "0")  # real_b has no provided labels
    cell = {key: value for key, value in baseline.items() if key != "seed"}
    assert plan.ablation_cell_settings("real_a", "default") == cell  # one job runs every seed: the seed is per run


def test_a_cells_seeds_run_with_their_own_paths():
    """One job trains (scores) every seed of a cell; ``{seed}`` in its per-seed flags names each seed's files."""
    plan = real_plan(ablations={"seeds": [0, 5], "factors": {"dropout": [0.5]}})
    train = shlex.split(plan.ablation_seed_flags("real_a", "dropout-0.5", "train").replace("{seed}", "5"))
    assert train == shlex.split(
        "--seed 5 --split results/splits/real_a.seed-5.json --output-dir results/ablations/real_a/dropout-0.5/seed-5"
        " --resume-dir results/.resume/train_ablation/real_a/dropout-0.5/seed-5"
    )
    evaluate = shlex.split(plan.ablation_seed_flags("real_a", "dropout-0.5", "evaluate").replace("{seed}", "0"))
    run_dir = "results/ablations/real_a/dropout-0.5/seed-0"
    assert evaluate == shlex.split(
        f"--checkpoint {run_dir}/best_model.pt --history {run_dir}/latest.pt --split results/splits/real_a.seed-0.json"
        f" --output {run_dir}/results.json --predictions {run_dir}/test_predictions.npz --baselines results/baselines/real_a/seed-0.json"
    )


def test_baselines_are_fitted_on_the_split_their_models_are_scored_on():
    plan = real_plan(ablations={"seeds": [0, 5], "factors": {"dropout": [0.5]}}, multi_model={"groups": {"ab": ["real_a", "real_b"]}})
    assert plan.baselines_split_file("real_a", planning.PLAIN_SPLIT) == plan.paths.split_path("real_a")
    assert plan.baselines_split_file("real_a", "seed-5") == plan.paths.split_path("real_a", 5)
    assert plan.multi_baselines("ab") == ["results/baselines/real_a/plain.json", "results/baselines/real_b/plain.json"]
    assert plan.paths.baselines_scores_path("real_a", "seed-5") == "results/baselines/real_a/seed-5.npz"
    assert [bool(re.fullmatch(planning.BASELINES_SPLIT_PATTERN, name)) for name in ("plain", "seed-12", "seed-", "test")] == [
        True,
        True,
        False,
        False,
    ]


def test_training_and_scoring_rules_take_every_settings_flag_from_the_plan():
    """Each rule running a training or scoring command passes the plan's flags (evaluation and
    detection blocks included), so no rule can leave one out."""
    plan = Plan(load("tests/data/tiny_config.yaml", evaluation={"positive_fraction_of_max": 0.4}, detection={"n_boot": 50}))
    trained = plan.train_command_flags({"epochs": 3})
    assert shlex.split(trained) == ["--epochs", "3", "--positive-fraction-of-max", "0.4", *shlex.split(plan.detection_flags)]
    assert "--n-boot 50" in plan.detection_flags
    assert shlex.split(plan.score_command_flags) == ["--positive-fraction-of-max", "0.4", *shlex.split(plan.detection_flags)]
    commands = {
        "train_command_flags": ("train_risk_predictor", "train_multi_model", "train_ablation_cell"),
        "score_command_flags": ("evaluate_risk_predictor", "evaluate_multi_model", "evaluate_ablation_cell", "score_baselines"),
    }
    rules = [block for path in sorted((ROOT / "rules").glob("*.smk")) for block in re.split(r"\n(?=rule |use rule )", path.read_text())]
    for method, scripts in commands.items():
        for script in scripts:
            (rule,) = [block for block in rules if block.startswith("rule ") and f'code_for("{script}")' in block]
            assert f"PLAN.{method}" in rule and "{params.flags}" in rule, rule.splitlines()[0]


def test_labels_factor_only_where_labels_are_provided():
    plan = real_plan(ablations={"seeds": [0], "factors": {"labels": ["provided", "heuristic"]}})
    assert [source for source, _, _ in plan.ablation_runs("labels")] == ["real_a", "real_a"]
    assert plan.ablation_training_data("real_a", "labels-heuristic") == {
        "data": "results/datasets/real_a/heuristic.vlarisk",
        "same_rollouts": "results/datasets/real_a/heuristic.same_rollouts.txt",
    }
    assert plan.ablation_training_data("real_a", "default") == {"data": "results/datasets/real_a/dataset.vlarisk"}
    unlabelled = real_plan(ablations={"sources": ["real_b", "sim_c"], "seeds": [0], "factors": {"labels": ["heuristic"], "dropout": [0.3]}})
    assert unlabelled.ablation_factors() == ["dropout"]
    assert "results/paper/tables/ablation_labels.md" not in unlabelled.paper_tables()


def test_growing_the_grid_only_adds_targets():
    grid = {
        "sources": ["tiny_a"],
        "seeds": [0],
        "training": {"epochs": 2},
        "factors": {"loss_type": ["bce", "mse"], "labels": ["provided", "heuristic"]},
    }
    before = set(Plan(load("tests/data/tiny_config.yaml", ablations=grid)).ablation_results())
    seeds = set(Plan(load("tests/data/tiny_config.yaml", ablations={**grid, "seeds": [0, 1]})).ablation_results())
    values = set(
        Plan(
            load("tests/data/tiny_config.yaml", ablations={**grid, "factors": {**grid["factors"], "loss_type": ["bce", "mse", "mae"]}})
        ).ablation_results()
    )
    assert seeds - before == {
        f"results/ablations/tiny_a/{cell}/seed-1/results.json" for cell in ("default", "loss_type-mse", "labels-heuristic")
    }
    assert values - before == {"results/ablations/tiny_a/loss_type-mae/seed-0/results.json"} and before <= seeds and before <= values


def test_paper_yaml_grid():
    plan = Plan(load("config/paper.yaml"))
    cells = {source: list(plan.ablation_cells(source)) for source in plan.ablation_sources}
    assert len(cells["sim_openvla_oft"]) == 11 and "labels-heuristic" in cells["sim_openvla_oft"]
    assert cells["sim_openvla"] == [cell for cell in cells["sim_openvla_oft"] if cell != "labels-heuristic"]
    assert len(plan.ablation_results()) == (11 + 10) * 3


def test_paper_yaml_reports_unseen_tasks_over_three_task_splits():
    plan = Plan(load("config/paper.yaml"))
    split = plan.split_settings()
    assert (split["held_out_tasks"], split["unseen_task_fraction"], plan.n_task_splits) == ("auto", 0.3, 3)
    assert plan.task_split_results("sim_openvla") == [f"results/models/sim_openvla/task-split-{k}/results.json" for k in (1, 2)]
    assert "--task-split 2 " in plan.split_flags(task_split=2) and "--unseen-task-fraction 0.3" in plan.split_flags()


def test_the_quick_default_keeps_one_task_split():
    plan = Plan(load())
    assert plan.n_task_splits == 1 and plan.task_split_results("synthetic_a") == []
    assert plan.split_files("synthetic_a") == ["results/splits/synthetic_a.json"]
    assert "--task-split 0 --alpha 0.1" in plan.split_flags()


def test_several_task_splits_need_automatic_held_out_tasks():
    with pytest.raises(ValueError, match="n_task_splits is 2 but split.held_out_tasks is a fixed list"):
        Plan(load(split={"n_task_splits": 2, "held_out_tasks": ["1"]}))


# ------------------------------------------------------------------------------- tables
def test_table_inputs_and_commands():
    plan = Plan(load())
    assert plan.table_input("failure_correlation") == {
        "predictions": [f"results/models/{source}/test_predictions.npz" for source in ("synthetic_a", "synthetic_b", "physics_pick_place")]
    }
    assert plan.table_input("auc_per_dimension")["multi"] == ["results/multi/all_sources/results.json"]
    single = " ".join(f"--single {s} results/models/{s}/results.json" for s in ("synthetic_a", "synthetic_b", "physics_pick_place"))
    multi = "--multi all_sources results/multi/all_sources/results.json"
    assert plan.table_command("ap_per_dimension") == f"per-dimension --metric ap {single} {multi}"
    assert plan.table_command("single_vs_multi") == f"single-vs-multi {single} {multi}"
    assert plan.table_command("failure_correlation").startswith("failure-correlation --predictions synthetic_a ")


def test_every_planned_table_command_reaches_its_builder():
    """The registry is read on both sides: the command line the plan writes for each main table
    parses with make_tables.py's parser to the subcommand whose builder the registry names."""
    plan = Plan(load())
    for name, made in PAPER_TABLES.items():
        args = parse_table_args(["--output-prefix", "t", *shlex.split(plan.table_command(name))])
        assert tables.BUILDERS[args.table] is getattr(tables, made.builder), name


# ------------------------------------------------------------------------ own sources only
def test_a_config_of_only_sources_plans_every_default_around_them():
    """README: replace the sources, nothing else changes (the group is `all`, ablations the first)."""
    plan = Plan(load(sources=REAL))
    assert plan.multi_groups == {"all_sources": ["real_a", "real_b", "sim_c"]}
    assert plan.ablation_sources == ["real_a"]
    assert "results/multi/all_sources/results.json" in plan.all_targets()


def test_the_all_group_is_left_out_with_one_source():
    plan = Plan(load(sources={"only": REAL["real_b"]}))
    assert plan.multi_groups == {} and plan.all_targets() == ["results/models/only/results.json"]
    assert plan.ablation_sources == ["only"]


def test_named_groups_and_ablated_sources_still_win():
    plan = real_plan(multi_model={"groups": {"ab": ["real_a", "real_b"], "every": "all"}}, ablations={"sources": ["real_b", "sim_c"]})
    assert plan.multi_groups == {"ab": ["real_a", "real_b"], "every": ["real_a", "real_b", "sim_c"]}
    assert plan.ablation_sources == ["real_b", "sim_c"]


# ------------------------------------------------------------------------------ experiments
def test_results_root_of_an_experiment():
    assert planning.results_root(load()) == "results"
    assert planning.results_root(load(experiment="lr_small")) == "results/experiments/lr_small"
    assert load(experiment="lr_small")["training"]["lr"] == 0.0001
    paths = Plan(load(experiment="lr_small")).paths
    assert paths.model_dir("a") == "results/experiments/lr_small/models/a"
    assert paths.comparison_path("csv") == "results/comparison/runs.csv"  # one table for every experiment
    assert Plan(load()).paths.model_dir("a") == "results/models/a"  # a plan of another config is not changed


@pytest.mark.parametrize(
    "experiment, shares",
    [
        ({"training": {"lr": 0.0001}}, True),
        ({"training": {"epochs": 3}, "detection": {"n_boot": 10}}, True),
        ({"split": {"seed": 1}}, False),
        ({"sources": {"synthetic_a": {"simulate": {"seed": 3}}}}, False),
        ({"detection": {"alpha": 0.2}}, False),
    ],
)
def test_an_experiment_shares_the_plain_runs_data_unless_it_changes_them(experiment, shares):
    """Rollouts, datasets and splits are the plain run's (made once) for an experiment that leaves
    sources, split and detection.alpha alone; its models and logs are its own either way."""
    config = load(experiments={"e": experiment}, experiment="e")
    data = "results" if shares else "results/experiments/e"
    assert planning.data_root(config) == data
    assert planning.data_root(load()) == "results"
    paths = Plan(config).paths
    assert paths.dataset_path("a") == f"{data}/datasets/a/dataset.vlarisk"
    assert paths.split_path("a") == f"{data}/splits/a.json"
    assert paths.split_path("a", seed=2) == f"{data}/splits/a.seed-2.json"
    assert paths.rollout_path("a", "success") == f"{data}/rollouts/a/success_rollouts.pkl"
    assert paths.data_log_path("split_dataset", "a") == f"{data}/logs/split_dataset/a.log"
    assert paths.model_dir("a") == "results/experiments/e/models/a"
    assert paths.log_path("train_model", "a") == "results/experiments/e/logs/train_model/a.log"


def test_all_adds_one_detection_figure_per_single_model_for_its_report():
    plan = Plan(TINY)
    assert plan.report_figures() == ["results/paper/figures/detection/tiny_a.png", "results/paper/figures/detection/tiny_b.png"]
    assert set(plan.report_figures()) <= set(plan.paper_targets()["figures"])


def test_the_comparison_reads_other_runs_as_found():
    plan = Plan(load())
    found = ["results/models/synthetic_a/results.json", "results/experiments/x/models/synthetic_a/results.json"]
    assert plan.comparison_runs(found) == ["results/experiments/x/models/synthetic_a/results.json"]
