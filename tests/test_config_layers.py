"""The pipeline config's layers: config/config.yaml, a user's files and --config merged in order as
Snakemake's `configfile:` merges them (config_checks.over_defaults), the schema's defaults, nulls,
--config strings read as the schema's types, unknown keys refused, experiments
(vlarisk.workflow.config_checks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from vlarisk.core.settings import SplitSettings, TrainingConfig, default_of, defaults, settings_of
from vlarisk.workflow.config_checks import (
    REPLACED_WHOLE,
    ConfigError,
    check_schema,
    coerce,
    merge_configs,
    over_defaults,
    resolve_config,
    select_experiment,
)
from vlarisk.workflow.planning import Plan

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "config" / "schema" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
DEFAULTS = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
OWN = {"mine": {"success": "data/s.pkl", "failure": "data/f.pkl"}}


def resolved(config, **kwargs) -> dict:
    merged = resolve_config(over_defaults(DEFAULTS, config), SCHEMA, **kwargs)
    validate(merged, schema=str(SCHEMA_PATH))
    return merged


# ------------------------------------------------------------------------------------ merging
def test_a_partial_config_merges_over_the_defaults():
    config = resolved({"sources": OWN, "training": {"epochs": 3}})
    assert config["sources"] == OWN  # replaced whole: no example source stays
    training_defaults = {field.name: default_of(field) for field in settings_of(TrainingConfig, "training")}
    assert config["training"] == {**training_defaults, "epochs": 3}  # the settings' defaults fill in the rest
    assert config["split"] == defaults(SplitSettings) and config["multi_model"]["groups"] == {"all_sources": "all"}


def test_named_collections_are_replaced_and_null_removes():
    merged = resolved({"multi_model": {"groups": {"ab": ["a", "b"]}}, "ablations": {"factors": {"dropout": [0.3]}}})
    assert merged["multi_model"]["groups"] == {"ab": ["a", "b"]}
    assert merged["ablations"]["factors"] == {"dropout": [0.3]} and merged["ablations"]["training"] == {"epochs": 8}
    assert "multi_model" not in resolved({"multi_model": None}) and "multi_model" not in resolved({}, overrides={"multi_model": "null"})
    assert resolved({"training": {"epochs": None}})["training"]["epochs"] == defaults(TrainingConfig)["epochs"]  # back to the default
    assert DEFAULTS["multi_model"] == {}  # defaults untouched


def test_the_workflow_file_holds_no_collection_a_user_replaces():
    """Snakemake merges a user's config over config/config.yaml key by key: a collection given there
    would mix with the user's, so their defaults are the schema's."""
    for path in REPLACED_WHOLE:
        layer = DEFAULTS
        for key in path[:-1]:
            layer = layer.get(key) or {}
        assert path[-1] not in layer, path


def test_experiments_and_command_line_values_replace_collections_whole():
    merged = merge_configs({"multi_model": {"groups": {"g": "all"}, "training": {"epochs": 2}}}, {"multi_model": {"groups": {"h": ["a"]}}})
    assert merged == {"multi_model": {"groups": {"h": ["a"]}, "training": {"epochs": 2}}}


@pytest.mark.parametrize("path", ["config/paper.yaml", "tests/data/tiny_config.yaml"])
def test_complete_configs_keep_their_meaning(path):
    """A config that sets every block itself plans the same jobs with the same settings whether it
    is merged over the defaults or used alone (--replace-workflow-config)."""
    own = yaml.safe_load((ROOT / path).read_text())
    alone = resolve_config(own, SCHEMA)
    validate(alone, schema=str(SCHEMA_PATH))
    merged, alone = Plan(resolved(own)), Plan(alone)
    assert merged.all_targets() == alone.all_targets() and merged.paper_targets() == alone.paper_targets()
    for source in alone.sources:
        assert merged.training_settings(source) == {"grad_clip": 1.0, **alone.training_settings(source)}
    assert merged.multi_groups == alone.multi_groups
    cells = [
        (source, cell)
        for factor in alone.ablation_factors()
        for source in alone.ablation_sources
        for _, cell in alone.ablation_factor_cells(source, factor)
    ]
    assert [merged.ablation_settings(s, c, 0)["epochs"] for s, c in cells] == [alone.ablation_settings(s, c, 0)["epochs"] for s, c in cells]


# ----------------------------------------------------------------------------------- coercion
def test_config_strings_are_read_as_the_schema_types():
    """Snakemake hands `--config 'training={epochs: 3, ...}'` over as strings."""
    given = {
        "training": {"epochs": "3", "lr": "1e-4", "normalize": "false", "hidden_dims": ["64", "32"], "device": "cpu"},
        "sources": {"s": {"simulate": {"hidden_dim": "16", "success_steps": ["20", "30"], "failure_steps": "40"}}},
        "split": {"held_out_tasks": ["3"], "val_fraction": "0.2"},
        "multi_model": {"groups": {"g": "all"}},
    }
    coerced = coerce(given, SCHEMA)
    assert coerced["training"] == {"epochs": 3, "lr": 1e-4, "normalize": False, "hidden_dims": [64, 32], "device": "cpu"}
    assert coerced["sources"]["s"]["simulate"] == {"hidden_dim": 16, "success_steps": [20, 30], "failure_steps": 40}
    assert coerced["split"] == {"held_out_tasks": ["3"], "val_fraction": 0.2}  # task ids may be text
    assert coerced["multi_model"]["groups"] == {"g": "all"}
    assert given["training"]["epochs"] == "3"  # a new value, the given one unchanged


def test_a_string_that_does_not_convert_is_left_for_the_schema():
    config = resolve_config(over_defaults(DEFAULTS, {"training": {"epochs": "three"}}), SCHEMA)
    with pytest.raises(Exception, match="'three' is not of type 'integer'"):
        validate(config, schema=str(SCHEMA_PATH))


def test_overrides_from_the_command_line_win_and_keep_types():
    config = resolved({"sources": OWN, "training": {"epochs": "3"}}, overrides={"training": {"epochs": "3"}})
    assert config["training"]["epochs"] == 3


# ------------------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize(
    "layers, message",
    [
        (
            [("my.yaml", {}), ("--config", {"epochs": 3})],
            r"--config: epochs: unknown key \(a setting of training: write training: \{epochs: ...\}\)",
        ),
        ([("my.yaml", {"sorces": OWN})], r"my.yaml: sorces: unknown key \(did you mean sources\?\)"),
        ([("--config", {"experiments_to_run": ["a", "b"]})], r"--config: experiments_to_run: unknown key \(read by vlarisk-run"),
    ],
    ids=["a-block-setting", "misspelt", "read-by-vlarisk-run"],
)
def test_unknown_top_level_keys_name_their_origin(layers, message):
    user = {key: value for _, layer in layers for key, value in layer.items()}
    with pytest.raises(ConfigError, match=message):
        check_schema(resolve_config(over_defaults(DEFAULTS, user), SCHEMA), SCHEMA, origins=layers)


def test_the_schema_refuses_unknown_top_level_keys_too():
    with pytest.raises(Exception, match="Additional properties are not allowed"):
        validate({**DEFAULTS, "epochs": 3}, schema=str(SCHEMA_PATH))


# -------------------------------------------------------------------------------- experiments
def test_a_selected_experiment_is_merged_over_the_config():
    config = resolved({"sources": OWN, "experiments": {"small": {"training": {"lr": "1e-4"}}}, "experiment": "small"})
    assert config["training"]["lr"] == 1e-4 and config["training"]["epochs"] == DEFAULTS["training"]["epochs"]
    assert "lr_small" not in config["experiments"]  # the user's experiments replace the examples


def test_the_schema_examples_can_be_selected():
    assert resolved({"experiment": "lr_small"})["training"]["lr"] == 1e-4


def test_command_line_values_win_over_the_experiment():
    user = {"experiments": {"e": {"training": {"epochs": 5}}}, "experiment": "e", "training": {"epochs": "2"}}
    assert resolved(user, overrides={"training": {"epochs": "2"}})["training"]["epochs"] == 2


@pytest.mark.parametrize(
    "experiments, selected, message",
    [
        ({"a": {"training": {"lr": 0.1}}}, "b", r"experiment: 'b' is not defined under experiments \(defined: a\)"),
        ({"a": {"epochs": 3}}, None, r"experiments.a: epochs: unknown key \(a setting of training"),
        ({"a": {"experiment": "b"}}, None, "experiments.a: an experiment cannot hold experiment"),
        ({"a b": {}}, None, "experiments.a b: an experiment's name is its folder"),
        ({"a": 3}, None, "experiments.a: expected a mapping of settings"),
    ],
    ids=["undefined", "unknown-key", "nested", "bad-name", "not-a-mapping"],
)
def test_bad_experiments_name_the_experiment(experiments, selected, message):
    with pytest.raises(ConfigError, match=message):
        select_experiment({"experiments": experiments, "experiment": selected}, SCHEMA)
