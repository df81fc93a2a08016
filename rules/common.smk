# Config validation, and the Python behind the rules. What is built, from which files and with
# which settings is planned in src/vlarisk/planning.py (paths, settings, the ablation grid, the
# targets, resources); the training flags come from src/vlarisk/settings.py (TrainingConfig).
# The other files in rules/ hold one stage's rules each and no functions.
import importlib.util
import json
import os
import sys

from snakemake.utils import validate


def _load_standalone(module):
    """One module of this workflow's src/vlarisk, alone, as `vlarisk_<module>` (not whatever
    vlarisk is installed, nor the rest of the package, nor torch). Such a module imports only the
    standard library (and yaml) at module level."""
    path = os.path.join(workflow.basedir, "src", "vlarisk", f"{module}.py")
    spec = importlib.util.spec_from_file_location(f"vlarisk_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


# YAML keeps only the last of two equal keys (e.g. two sources of one name): refuse them.
_config_checks = _load_standalone("config_checks")
# Which package modules each workflow script imports: a rule's code inputs.
_code_inputs = _load_standalone("code_inputs")
# The training settings (TrainingConfig's fields) and the flags that pass them.
_settings = _load_standalone("settings")
_load_standalone("planning")
_config_checks.check_config_files(_config_checks.effective_config_files(workflow))
validate(config, schema="../config/schema/config.schema.yaml")

from vlarisk_planning import (
    Plan,
    ablation_dir,
    benchmark_path,
    best_model,
    data_config_path,
    dataset_path,
    figure_path,
    latest_model,
    log_path,
    mem_mb_for,
    model_dir,
    multi_dir,
    planting_path,
    results_json,
    rollout_path,
    runtime_for,
    same_rollouts_path,
    split_path,
    table_path,
    table_prefix,
    test_predictions,
    ABLATION_CELL_PATTERN,
    PAPER_TABLES,
)

# Fails here, before any job, on what the schema cannot check (e.g. a group of unknown sources).
PLAN = Plan(config)


wildcard_constraints:
    source=PLAN.source_pattern,
    variant="dataset|heuristic",


def code_for(script):
    """The workflow script ``script`` and the package modules it imports, as input files."""
    path = f"workflow_scripts/{script}.py"
    return [path, *_code_inputs.module_closure(path, "src/vlarisk")]


def training_flags(settings):
    """Flags of train_risk_predictor.py / train_multi_model.py for a `training` settings dict."""
    return _settings.training_flags(settings, evaluation=PLAN.evaluation)


def planting_flag(wildcards, input):
    return f"--planting {input.planting}" if "planting" in input.keys() else ""


def write_data_config(path, entries, log_file):
    """Write a data config for train/evaluate_multi_model.py and note its members in the log."""
    with open(path, "w") as handle:
        json.dump({"datasets": entries}, handle, indent=2)
    with open(log_file, "w") as handle:
        print(f"{path}: {[entry['model_name'] for entry in entries]}", file=handle)
