"""Config errors name the layer (file or --config) and the key path, on one line each."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlarisk.workflow.config_checks import ConfigError, check_schema, over_defaults, resolve_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config" / "schema" / "config.schema.yaml").read_text())
DEFAULTS = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def problems(layers: list[tuple[str, dict]]) -> list[str]:
    """The error lines for user layers merged over the defaults, as the Snakefile checks them."""
    merged = {}
    for _, layer in layers:
        merged = {**merged, **layer}
    config = resolve_config(over_defaults(DEFAULTS, merged), SCHEMA)
    with pytest.raises(ConfigError) as caught:
        check_schema(config, SCHEMA, origins=[("config/config.yaml", DEFAULTS), *layers])
    return str(caught.value).splitlines()


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        ({"training": {"hiden_dims": [16]}}, "my.yaml: training.hiden_dims: unknown key (did you mean hidden_dims?)"),
        ({"training": {"epochs": "three"}}, "my.yaml: training.epochs: expected an integer, got 'three'"),
        ({"split": {"calibration_fraction": "lots"}}, "my.yaml: split.calibration_fraction: expected a number, got 'lots'"),
        ({"training": {"activation": "relux"}}, "my.yaml: training.activation: 'relux' is not one of relu, gelu, tanh, silu, leaky_relu"),
        ({"training": {"epochs": 0}}, "my.yaml: training.epochs: 0 is less than the minimum of 1"),
        (
            {"sources": {"a": {"simulate": {"hidden_dm": 16}}}},
            "my.yaml: sources.a.simulate.hidden_dm: unknown key (did you mean hidden_dim?)",
        ),
        (
            {"sources": {"a": {"success": "s.pkl"}}},
            "my.yaml: sources.a: 'simulate' is required; or 'collect' is required; or 'failure' is required",
        ),
        ({"detection": {"zzz": 1}}, "my.yaml: detection.zzz: unknown key (the keys are alpha, horizon, n_boot, seed, threshold)"),
    ],
)
def test_one_line_naming_file_and_key_path(layer, expected):
    assert problems([("my.yaml", layer)]) == [expected]


def test_the_last_layer_setting_a_key_is_named():
    lines = problems([("my.yaml", {"training": {"epochs": 0}}), ("--config", {"training": {"epochs": "three"}})])
    assert lines == ["--config: training.epochs: expected an integer, got 'three'"]
    lines = problems([("a.yaml", {"training": {"epochs": "three"}}), ("b.yaml", {"split": {"seed": 1}})])
    assert lines == ["a.yaml: training.epochs: expected an integer, got 'three'"]


def test_every_problem_gets_its_line():
    lines = problems([("my.yaml", {"training": {"epochs": 0, "dropot": 0.1}, "split": {"seed": -1}})])
    assert lines == [
        "my.yaml: split.seed: -1 is less than the minimum of 0",
        "my.yaml: training.dropot: unknown key (did you mean dropout?)",
        "my.yaml: training.epochs: 0 is less than the minimum of 1",
    ]


def test_the_defaults_pass():
    check_schema(resolve_config(DEFAULTS, SCHEMA), SCHEMA, origins=[("config/config.yaml", DEFAULTS)])
