"""Each setting is defined once, a field of vlarisk.core.settings (TrainingConfig, SplitSettings,
DetectionSettings, SimulationSettings, CollectSettings and PolicySettings, MultiModelSettings,
AblationSettings): the generated schema and docs tables, the configs, the commands' flags and the
flags the rules pass are all held to it, and no hand copy of a default or a constraint may reappear."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import typing
from dataclasses import MISSING, asdict
from pathlib import Path

import jsonschema
import pytest
import yaml

from vlarisk.core import settings
from vlarisk.core.settings import (
    BLOCKS,
    LOSS_TYPES,
    DetectionSettings,
    SplitSettings,
    TrainingConfig,
    add_arguments,
    block_flags,
    config_from_args,
    default_of,
    knob_names,
    knobs,
    training_flags,
)
from vlarisk.workflow import config_schema

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
SETTINGS_BLOCKS = ("training", "evaluation", "split", "detection")
SOURCE_BLOCKS = {"simulate": settings.SimulationSettings, "collect": settings.CollectSettings}


def load_config(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def resolved(path: str) -> dict:
    """A shipped config as the workflow sees it: over config/config.yaml, the defaults filled in."""
    from snakemake.utils import validate

    from vlarisk.workflow.config_checks import over_defaults, resolve_config

    config = resolve_config(over_defaults(load_config("config/config.yaml"), load_config(path)), SCHEMA)
    validate(config, schema=str(ROOT / "config" / "schema" / "config.schema.yaml"))
    return config


def training_parser() -> argparse.ArgumentParser:
    from vlarisk.commands.cli_args import add_training_arguments

    return add_training_arguments(argparse.ArgumentParser(prog="train"))


# ------------------------------------------------------------------------------- the schema
def test_schema_training_block_names_exactly_the_training_fields():
    assert list(TRAINING_SCHEMA["properties"]) == knob_names("training")


def test_fields_kept_elsewhere_are_in_their_block():
    assert knob_names("evaluation") == ["positive_fraction_of_max"]
    assert set(knob_names("evaluation")) <= set(SCHEMA["properties"]["evaluation"]["properties"])


def test_the_schema_file_is_the_generated_one():
    assert (ROOT / "config" / "schema" / "config.schema.yaml").read_text() == config_schema.schema_text(), "run `make schema`"


def test_the_docs_tables_are_the_generated_ones():
    text = (ROOT / "docs" / "settings.md").read_text()
    assert text == config_schema.docs_text(text), "run `make schema`"
    for kind in BLOCKS:
        assert f"<!-- settings:{kind.BLOCK} -->" in text


@pytest.mark.parametrize("block", SETTINGS_BLOCKS)
def test_schema_defaults_are_the_field_defaults(block):
    properties = SCHEMA["properties"][block]["properties"]
    assert {name: spec["default"] for name, spec in properties.items()} == {
        field.name: default_of(field) for _, field in settings.block_fields(block)
    }


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


@pytest.mark.parametrize("block, kind", SOURCE_BLOCKS.items())
def test_a_source_block_is_its_settings_fields(block, kind):
    """A source's simulate and collect blocks: the fields' keys, no defaults (the generator and the command fill them)."""
    schema = SCHEMA["definitions"][block]
    assert list(schema["properties"]) == [field.name for _, field in settings.block_fields(block)]
    assert not any("default" in value for value in schema["properties"].values())
    given = {"tasks": ["pick-place-v3"]} if kind is settings.CollectSettings else {}
    jsonschema.validate(json.loads(json.dumps(settings.defaults(kind) | given)), schema)


def test_the_policy_block_is_the_policy_settings_without_the_collect_blocks_keys():
    policy = SCHEMA["definitions"]["collect"]["properties"]["policy"]["properties"]
    assert list(policy) == [name for name in settings.defaults(settings.PolicySettings) if name not in ("seed", "horizon")]
    assert settings.PolicySettings().horizon == settings.CollectSettings.horizon


def test_multi_model_and_ablation_blocks_are_their_settings_fields():
    for kind in (settings.MultiModelSettings, settings.AblationSettings):
        properties = SCHEMA["properties"][kind.BLOCK]["properties"]
        assert list(properties) == [field.name for field in fields_of(kind)]
        assert {name: value["default"] for name, value in properties.items() if "default" in value} == settings.defaults(kind)
    assert SCHEMA["properties"]["ablations"]["properties"]["seeds"]["default"] == [0, 1, 2]


def test_the_generators_spec_is_the_simulate_settings():
    from vlarisk.data.synthetic import SimulationSpec

    assert asdict(SimulationSpec()) == asdict(settings.SimulationSettings())
    assert [field.name for field in fields_of(SimulationSpec)] == list(SCHEMA["definitions"]["simulate"]["properties"])


@pytest.mark.parametrize(
    "values, message",
    [
        ({"hidden_dim": 7}, "hidden_dim must be >= 8"),
        ({"task_specific": 1.5}, "task_specific must be <= 1"),
        ({"failure_steps": [40]}, "failure_steps must be a rollout length"),
        ({"layout": "tuple"}, "layout must be one of"),
        ({"nonlinear_dimensions": [1, 1]}, "nonlinear_dimensions must not repeat"),
    ],
)
def test_values_made_in_python_meet_the_schemas_constraints(values, message):
    """What the schema refuses in a config, the settings refuse when made in Python (and the other way round)."""
    with pytest.raises(ValueError, match=message):
        settings.SimulationSettings(**values)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, SCHEMA["definitions"]["simulate"])


def test_the_collect_command_takes_the_collect_fields_as_flags():
    from vlarisk.commands.collect import parser

    options = parser()._option_string_actions
    assert {settings.flag_of(field) for field in fields_of(settings.CollectSettings)} <= set(options)
    args = parser().parse_args(["--tasks", "push-v3", "--out", "o"])
    assert settings.config_from_args(args, settings.CollectSettings).horizon == settings.CollectSettings.horizon
    assert json.loads(args.mix) == settings.defaults(settings.CollectSettings)["mix"]


def test_collect_rule_flags_fill_in_the_defaults_and_give_the_command_the_block():
    from vlarisk.commands.collect import parser
    from vlarisk.workflow.planning import Plan

    block = {"tasks": ["push-v3"], "episodes": 12, "mix": {"none": 1}, "policy": {"epochs": 3}}
    plan = Plan({**resolved("tests/data/tiny_config.yaml"), "sources": {"physics": {"collect": block}}, "ablations": {}})
    assert plan.policy_flags("physics") == "--env metaworld --tasks push-v3 --seed 0 --horizon 150 --policy-settings '{\"epochs\": 3}'"
    args = parser().parse_args([*shlex.split(plan.collect_flags("physics")), "--out", "o"])
    parsed = settings.config_from_args(args, settings.CollectSettings)
    assert (parsed.episodes, json.loads(parsed.mix), json.loads(parsed.policy)) == (12, {"none": 1}, {"epochs": 3})


# ------------------------------------------------------------------------------- the configs
@pytest.mark.parametrize("path", CONFIGS)
def test_config_validates_and_makes_a_training_config(path):
    from snakemake.utils import validate

    config = load_config(path)
    validate(config, schema=str(ROOT / "config" / "schema" / "config.schema.yaml"))
    TrainingConfig(**config["training"], **{name: config["evaluation"][name] for name in knob_names("evaluation")})
    SplitSettings(**config["split"])
    DetectionSettings(**config["detection"])


@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_configs_hold_only_what_differs(path):
    """config/config.yaml from the settings' defaults; the others from what they are merged over."""
    beneath = resolved("config/config.yaml") if path != "config/config.yaml" else {}
    for block in (*SETTINGS_BLOCKS, "multi_model", "ablations"):
        base = {field.name: default_of(field) for _, field in settings.block_fields(block)} | beneath.get(block, {})
        for key, value in (load_config(path).get(block) or {}).items():
            assert value != base[key], f"{path}: {block}.{key}: {value!r} is already the value beneath it"


# ------------------------------------------------------------------------- the commands' flags
def test_every_field_and_guide_flag_is_a_training_flag():
    options = training_parser()._option_string_actions
    assert {settings.flag_of(field) for field in knobs()} <= set(options)
    assert set(GUIDE_FLAGS) <= set(options)
    assert {"--no-normalize", "--no-bf16"} <= set(options)


def test_flag_defaults_are_the_field_defaults():
    from vlarisk.commands.cli_args import training_config

    args = training_parser().parse_args(["--output-dir", "out"])
    assert training_config(args) == TrainingConfig()


def test_guide_style_plain_flags_still_work():
    from vlarisk.commands.cli_args import training_config

    args = training_parser().parse_args(
        shlex.split("--output-dir o --normalize --bf16 --hidden-dims --grad-clip 0.5 --positive-fraction 0.3")
    )
    config = training_config(args)
    assert (config.normalize, config.bf16, config.hidden_dims, config.grad_clip) == (True, True, [], 0.5)
    assert config.positive_fraction_of_max == 0.3 and args.positive_fraction_of_max == 0.3
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
        config = resolved(path)
        cases.append((config["training"], config["evaluation"]))
        for overrides in (
            config.get("ablations", {}).get("training", {}),
            {"hidden_dims": [], "bf16": True, "grad_clip": 0.25, "device": "cuda:1"},
        ):
            cases.append(({**config["training"], **overrides}, config["evaluation"]))
    return cases


@pytest.mark.parametrize("training, evaluation", config_settings())
def test_rule_flags_give_the_command_exactly_the_settings(training, evaluation):
    from vlarisk.commands.cli_args import training_config

    flags = training_flags(training, evaluation=evaluation)
    args = training_parser().parse_args(["--output-dir", "o", *shlex.split(flags)])
    assert training_config(args) == TrainingConfig(**training, positive_fraction_of_max=evaluation["positive_fraction_of_max"])


def test_rule_flags_leave_an_unset_field_to_its_default_and_refuse_unknown_ones():
    assert training_flags({"epochs": 3, "normalize": False}) == "--epochs 3 --no-normalize"
    assert "--grad-clip" not in training_flags(load_config("tests/data/tiny_config.yaml")["training"])
    with pytest.raises(ValueError, match="unknown training setting"):
        training_flags({"epoch": 3})


# ------------------------------------------------------------------------------- one definition
@pytest.mark.parametrize("module", ["core.settings", "workflow.config_schema", "workflow.planning"])
def test_module_loads_without_torch_or_the_rest_of_the_package(module):
    """As the Snakefile and every command's --help load it, on every dry run."""
    code = f"""
import importlib, sys
sys.path.insert(0, {str(ROOT / "src")!r})
importlib.import_module("vlarisk.{module}")
print(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "vlarisk", "numpy", "sklearn")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # vlarisk.data.documents: the output file names the plan uses (its IO is imported when a file is read)
    assert set(eval(result.stdout)) <= {
        "vlarisk",
        *(f"vlarisk.{layer}" for layer in ("core", "data", "report", "workflow")),
        "vlarisk.core.constants",
        "vlarisk.core.settings",
        "vlarisk.data.documents",
        "vlarisk.report.table_registry",
        f"vlarisk.{module}",
    }


# ---------------------------------------------------------------- split and detection flags
def block_parser(kind) -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog=kind.BLOCK), kind)


@pytest.mark.parametrize("path", CONFIGS)
@pytest.mark.parametrize("kind", [SplitSettings, DetectionSettings])
def test_rule_flags_give_the_split_and_detection_commands_exactly_the_block(path, kind):
    block = resolved(path)[kind.BLOCK]
    args = block_parser(kind).parse_args(shlex.split(block_flags(kind, block)))
    parsed = vars(config_from_args(args, kind))
    if kind is SplitSettings:  # the pipeline's own key (no flag), and task lists as the split reads them
        del block["n_task_splits"], parsed["n_task_splits"]
        parsed = {**parsed, **{key: settings.tasks_argument(parsed[key]) for key in ("held_out_tasks", "calibration_tasks")}}
    assert parsed == block


def test_every_key_is_its_own_flag_and_the_old_spellings_still_work():
    assert {"--val-fraction", "--val-split", "--calibration-split", "--held-out-tasks"} <= set(
        block_parser(SplitSettings)._option_string_actions
    )
    detection = block_parser(DetectionSettings).parse_args(shlex.split("--bootstrap-seed 3 --alarm-threshold band --n-boot 7"))
    assert config_from_args(detection, DetectionSettings) == DetectionSettings(seed=3, threshold="band", n_boot=7)
    training = training_parser().parse_args(shlex.split("--output-dir o --val-split 0.3 --test-fraction 0.25"))
    assert (training.val_fraction, training.test_fraction) == (0.3, 0.25)


def test_the_split_and_detection_commands_take_the_settings_flags():
    from vlarisk.commands import split as split_command
    from vlarisk.score import detection_flags

    assert "add_arguments(parser, SplitSettings)" in Path(split_command.__file__).read_text()
    parser = argparse.ArgumentParser()
    detection_flags.add_detection_arguments(parser)
    assert detection_flags.detection_options(parser.parse_args([])) == detection_flags.DetectionOptions()


# ------------------------------------------------------------------------------ no hand copies
CODE = [*ROOT.glob("src/vlarisk/**/*.py"), *ROOT.glob("workflow_scripts/*.py"), *ROOT.glob("rules/*.smk"), ROOT / "Snakefile"]
# Other things that happen to share a setting's flag: the alarm levels vlarisk-check reports on; the
# split command's optional alpha (none: no count recorded).
NOT_COPIES = {("check.py", "alpha"), ("split.py", "alpha"), ("planning.py", "alpha")}
# The blocks whose constraints the scan also looks for in hand-written checks and schema entries.
CONSTRAINED = ("simulate", "collect", "policy", "multi_model", "ablations")


def _literal(value) -> str:
    if isinstance(value, str):
        return f"[\"']{re.escape(value)}[\"']"
    if isinstance(value, dict):
        return r"\{" + r",\s*".join(f"[\"']{re.escape(key)}[\"']:\\s*{_literal(item)}" for key, item in value.items()) + r"\}"
    if isinstance(value, (list, tuple)):
        return r"[\[(]" + r",\s*".join(map(re.escape, map(str, value))) + r"[\])]"
    return re.escape(repr(value))


def hand_copies() -> list[str]:
    """Lines outside vlarisk.core.settings that give a setting's key its default value, or make its flag by
    hand: declare it (``add_argument("--n-boot"``) or write it into the rules' flags (messages may name it)."""
    found = []
    for kind in BLOCKS:
        for field in fields_of(kind):
            default = default_of(field)
            if field.name == "seed" or isinstance(default, bool) or default in (None, [], {}) or default is MISSING:
                continue  # a zero seed, a boolean and "none" are everyone's own choice, not a copy
            pattern = re.compile(rf"\b{field.name}\b[\"']?\s*(?::\s*[\w\[\]|. ]+?)?\s*[=:]\s*{_literal(default)}(?![\w.])")
            flags = [flag for flag in (settings.flag_of(field), *field.metadata["aliases"]) if flag]
            flag_pattern = re.compile("|".join(rf"(?<![\w-]){re.escape(flag)}(?![\w-])" for flag in flags) or "(?!)")
            declared = re.compile("|".join(rf"(?:add_argument\(|^)\s*f?[\"']{re.escape(flag)}[\"' ]" for flag in flags) or "(?!)")
            for path in CODE:
                if path.name in ("settings.py", "config_schema.py") or (path.name, field.name) in NOT_COPIES:
                    continue
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    by_hand = declared.search(line) or (flag_pattern.search(line) and (path.name == "planning.py" or path.suffix == ".smk"))
                    if "``" not in line and (pattern.search(line) or by_hand):
                        found.append(f"{path.relative_to(ROOT)}:{number}: {field.name}: {line.strip()}")
    return found


def _number(value) -> str:
    """A number as code may spell it: ``1``, ``1.0``, ``1.00``."""
    whole = float(value).is_integer()
    spelled = rf"{int(value)}(?:\.0*)?" if whole else re.escape(repr(value))
    return rf"(?<![\w.]){spelled}(?![\w.])"


def constraint_copies() -> list[str]:
    """Lines outside vlarisk.core.settings that restate a constraint of a field of these blocks: a bound
    compared by hand (``self.task_specific <= 1.0``, ``2 <= low``) or the key given a schema of its own."""
    found = []
    for block in CONSTRAINED:
        for kind, field in settings.block_fields(block):
            schema = settings.value_schema(kind, field)
            bounds = [schema[key] for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if key in schema]
            bounds += [branch["items"].get("minimum") for branch in schema.get("oneOf", []) if "items" in branch]
            name = rf"(?:self\.|spec\.|settings\.)?\b{field.name}\b"
            patterns = [rf"{name}\s*[<>]=?\s*{_number(bound)}|{_number(bound)}\s*[<>]=?\s*{name}" for bound in bounds if bound is not None]
            patterns.append(rf"[\"']{field.name}[\"']\s*:\s*\{{\s*[\"'](?:type|enum|oneOf|minimum|maximum|\$ref)[\"']")
            if field.metadata["choices"]:
                patterns.append(rf"{name}\s*(?:not )?in\s*\(" + r",\s*".join(_literal(choice) for choice in field.metadata["choices"]))
            found += _scan(re.compile("|".join(patterns)), block, field.name)
    return found


def _scan(pattern: re.Pattern, block: str, name: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{number}: {block}.{name}: {line.strip()}"
        for path in CODE
        if path.name != "settings.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]


def fields_of(kind):
    from dataclasses import fields

    return fields(kind)


def test_no_hand_copy_of_a_default_or_a_flag():
    assert hand_copies() == []


def test_no_hand_copy_of_a_constraint():
    assert constraint_copies() == []


def test_the_scan_finds_a_hand_copy(tmp_path, monkeypatch):
    copy = tmp_path / "copy.py"
    copy.write_text(
        'def split(val_fraction: float = 0.2, n_boot=1000):\n    parser.add_argument("--n-boot")\n    log("--alpha is fine in a message")\n'
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "CODE", [copy])
    assert [line.split(": ")[1] for line in hand_copies()] == ["val_fraction", "n_boot", "n_boot"]


def test_the_scans_find_a_copy_of_a_source_blocks_default_or_constraint(tmp_path, monkeypatch):
    copy = tmp_path / "copy.py"
    copy.write_text(
        "def simulate(num_success: int = 200, horizon=150):\n"
        '    mix = {"none": 0.2, "action_noise": 0.25, "perception_bias": 0.35, "gripper_open": 0.2}\n'
        "    if not 0.0 <= spec.task_specific <= 1.0 or layout not in ('dict', 'list'):\n"
        '        return {"hidden_dim": {"type": "integer", "minimum": 8}}\n'
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "CODE", [copy])
    assert sorted({line.split(": ")[1] for line in hand_copies()}) == ["horizon", "mix", "num_success"]
    assert [line.split(": ")[1] for line in constraint_copies()] == ["simulate.hidden_dim", "simulate.task_specific", "simulate.layout"]
