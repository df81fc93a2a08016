"""Each training setting is defined once, in vlarisk.settings.TrainingConfig: the pipeline schema,
the configs, the training commands' flags and the flags the rules pass are all held to it."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import typing
from dataclasses import asdict
from pathlib import Path

import jsonschema
import pytest
import yaml

from vlarisk import settings
from vlarisk.settings import LOSS_TYPES, TrainingConfig, knob_names, knobs, training_flags

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config" / "schema" / "config.schema.yaml").read_text())
TRAINING_SCHEMA = SCHEMA["definitions"]["training"]
CONFIGS = ["config/config.yaml", "config/paper.yaml", "tests/data/tiny_config.yaml"]
JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}
# The flags the training guide and the README name.
GUIDE_FLAGS = (
    "--epochs --batch-size --lr --weight-decay --hidden-dims --dropout --activation --loss-type --normalize --seed --device"
    " --bf16 --grad-clip --patience --positive-fraction --output-dir --model-name --val-split --test-split --threads --resume --no-test"
).split()


def load_config(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def training_parser() -> argparse.ArgumentParser:
    from vlarisk.cli_args import add_training_arguments

    return add_training_arguments(argparse.ArgumentParser(prog="train"))


# ------------------------------------------------------------------------------- the schema
def test_schema_training_block_names_exactly_the_training_fields():
    assert list(TRAINING_SCHEMA["properties"]) == knob_names("training")


def test_fields_kept_elsewhere_are_in_their_block():
    assert knob_names("evaluation") == ["positive_fraction_of_max"]
    assert set(knob_names("evaluation")) <= set(SCHEMA["properties"]["evaluation"]["properties"])


def test_required_training_settings_are_fields():
    (required,) = [part["required"] for part in SCHEMA["properties"]["training"]["allOf"] if "required" in part]
    assert set(required) <= set(knob_names("training"))
    assert "grad_clip" not in required  # optional: configs written before it keep validating


@pytest.mark.parametrize("name", knob_names())
def test_schema_type_matches_the_field_type(name):
    kind = typing.get_type_hints(TrainingConfig)[name]
    block = TRAINING_SCHEMA if name in knob_names("training") else SCHEMA["properties"]["evaluation"]
    spec = block["properties"][name]
    if "enum" in spec:
        assert kind is str and all(isinstance(value, str) for value in spec["enum"])
    elif typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        assert spec["type"] == "array" and spec["items"]["type"] == JSON_TYPES[item]
    else:
        assert spec["type"] == JSON_TYPES[kind]


def test_schema_choices_are_the_fields_choices():
    assert tuple(TRAINING_SCHEMA["properties"]["loss_type"]["enum"]) == LOSS_TYPES
    ablated = SCHEMA["properties"]["ablations"]["properties"]["factors"]["properties"]
    assert tuple(ablated["loss_type"]["items"]["enum"]) == LOSS_TYPES
    assert tuple(TRAINING_SCHEMA["properties"]["activation"]["enum"]) == settings.ACTIVATIONS


def test_every_named_activation_builds_a_model():
    import vlarisk

    for name in settings.ACTIVATIONS:
        vlarisk.RiskPredictor(4, [3], activation=name)
    with pytest.raises(ValueError, match="activation must be one of"):
        vlarisk.RiskPredictor(4, [3], activation="sigmoidal")


def test_field_defaults_are_valid_config_values():
    defaults = {name: value for name, value in asdict(TrainingConfig()).items() if name in knob_names("training")}
    jsonschema.validate(defaults, {**TRAINING_SCHEMA, "definitions": SCHEMA["definitions"]})


# ------------------------------------------------------------------------------- the configs
@pytest.mark.parametrize("path", CONFIGS)
def test_config_validates_and_makes_a_training_config(path):
    from snakemake.utils import validate

    config = load_config(path)
    validate(config, schema=str(ROOT / "config" / "schema" / "config.schema.yaml"))
    TrainingConfig(**config["training"], **{name: config["evaluation"][name] for name in knob_names("evaluation")})


@pytest.mark.parametrize("path", ["config/config.yaml", "config/paper.yaml"])
def test_shipped_configs_spell_out_every_training_field(path):
    assert list(load_config(path)["training"]) == knob_names("training")


# ------------------------------------------------------------------------- the commands' flags
def test_every_field_and_guide_flag_is_a_training_flag():
    options = training_parser()._option_string_actions
    assert {settings.flag_of(field) for field in knobs()} <= set(options)
    assert set(GUIDE_FLAGS) <= set(options)
    assert {"--no-normalize", "--no-bf16"} <= set(options)


def test_flag_defaults_are_the_field_defaults():
    from vlarisk.cli_args import training_config

    args = training_parser().parse_args(["--output-dir", "out"])
    assert training_config(args) == TrainingConfig()


def test_guide_style_plain_flags_still_work():
    from vlarisk.cli_args import training_config

    args = training_parser().parse_args(
        shlex.split("--output-dir o --normalize --bf16 --hidden-dims --grad-clip 0.5 --positive-fraction 0.3")
    )
    config = training_config(args)
    assert (config.normalize, config.bf16, config.hidden_dims, config.grad_clip) == (True, True, [], 0.5)
    assert config.positive_fraction_of_max == 0.3 and args.positive_fraction == 0.3  # the scripts read args.positive_fraction
    assert training_config(training_parser().parse_args(["--output-dir", "o", "--no-normalize"])).normalize is False


def test_help_shows_defaults_and_choices():
    text = training_parser().format_help()
    for field in knobs():
        assert field.metadata["help"], field.name
    assert "(default: [512, 256])" in text and "(default: 1.0)" in text and "(default: True)" in text
    assert "{mse,mae,huber,bce}" in text


def test_a_bad_grad_clip_is_refused():
    with pytest.raises(ValueError, match="grad_clip must be > 0"):
        TrainingConfig(grad_clip=0)


# ------------------------------------------------------------------ the flags the rules pass
def config_settings():
    """(training settings, evaluation block) of every training job of the shipped configs."""
    cases = []
    for path in CONFIGS:
        config = load_config(path)
        cases.append((config["training"], config["evaluation"]))
        for overrides in (
            config.get("ablations", {}).get("training", {}),
            {"hidden_dims": [], "bf16": True, "grad_clip": 0.25, "device": "cuda:1"},
        ):
            cases.append(({**config["training"], **overrides}, config["evaluation"]))
    return cases


@pytest.mark.parametrize("training, evaluation", config_settings())
def test_rule_flags_give_the_command_exactly_the_settings(training, evaluation):
    from vlarisk.cli_args import training_config

    flags = training_flags(training, evaluation=evaluation)
    args = training_parser().parse_args(["--output-dir", "o", *shlex.split(flags)])
    assert training_config(args) == TrainingConfig(**training, positive_fraction_of_max=evaluation["positive_fraction_of_max"])


def test_rule_flags_leave_an_unset_field_to_its_default_and_refuse_unknown_ones():
    assert training_flags({"epochs": 3, "normalize": False}) == "--epochs 3 --no-normalize"
    assert "--grad-clip" not in training_flags(load_config("tests/data/tiny_config.yaml")["training"])
    with pytest.raises(ValueError, match="unknown training setting"):
        training_flags({"epoch": 3})


# ------------------------------------------------------------------------------- one definition
def test_training_reexports_the_one_definition():
    from vlarisk import training

    assert training.TrainingConfig is TrainingConfig and training.LOSS_TYPES is LOSS_TYPES


@pytest.mark.parametrize("module", ["settings", "planning"])
def test_module_loads_standalone_without_torch_or_the_package(module):
    """As the Snakefile loads it (rules/common.smk: _load_standalone), on every dry run."""
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("vlarisk_{module}", {str(ROOT / "src" / "vlarisk" / f"{module}.py")!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "vlarisk", "numpy"))
print(loaded)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
