# Config validation, and the Python behind the rules. What is built, from which files and with
# which settings is planned in src/vlarisk/workflow/planning.py (paths, settings, the ablation grid, the
# targets, resources, the flags of the training and scoring commands).
# The other files in rules/ hold one stage's rules each and no functions.
import json
import os
import shlex
import sys

import yaml
from snakemake.logging import logger
from snakemake.utils import validate

# The workflow's own folder (where this Snakefile's config/, src/ and workflow_scripts/ are), not
# the working directory: `snakemake -s <repo>/Snakefile --directory <scratch>` and use as a module
# both read the code and defaults from here and write only under the working directory.
WORKFLOW_DIR = os.path.dirname(os.path.abspath(str(workflow.current_basedir)))
AS_MODULE = not os.path.samefile(
    workflow.main_snakefile, os.path.join(WORKFLOW_DIR, "Snakefile")
)


# This workflow's own package first on the path (not whatever vlarisk is installed): the modules
# imported here use the standard library, yaml and numpy only (numpy: the table registry), so
# parsing never loads torch.
sys.path.insert(0, os.path.join(WORKFLOW_DIR, "src"))
# What loading the config with `configfile:` and `validate` leaves to do: duplicate keys, nulls,
# --config strings, experiments, one-line errors.
from vlarisk.workflow import config_checks

# Which package modules each workflow script imports: a rule's code inputs.
from vlarisk.workflow import code_inputs

from vlarisk.data import calibration_counts
from vlarisk.workflow import runs
from vlarisk.workflow.planning import (
    ABLATION_CELL_PATTERN,
    BASELINES_SPLIT_PATTERN,
    PLAIN_SPLIT,
    SEED_SPLIT_PREFIX,
    PAPER_TABLES,
    RESULTS_BASE,
    Plan,
)


def _read_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


# The config: config/config.yaml (what differs from the defaults), then the user's config files and
# --config values, merged key by key by Snakemake; --replace-workflow-config drops config/config.yaml.
# The example sources, multi-model group, ablation factors and experiments are the schema's defaults,
# not in that file, so that a user's own replace them whole. Used as a module, the config handed over
# is the user's layer (Snakemake skips `configfile:` then, so it is merged over the file here).
_defaults_file = os.path.join(WORKFLOW_DIR, "config", "config.yaml")


configfile: _defaults_file


_cli = workflow.config_settings
_user_files = [] if AS_MODULE else [str(path) for path in _cli.configfiles]
_overrides = {} if AS_MODULE else dict(_cli.config or {})
_defaults = _read_yaml(_defaults_file)
_layers = [(path, _read_yaml(path)) for path in _user_files] + (
    [("--config", _overrides)] if _overrides else []
)
if AS_MODULE:
    config = config_checks.over_defaults(_defaults, config)
elif _cli.replace_workflow_config:
    _defaults = {}
_schema = _read_yaml(
    os.path.join(WORKFLOW_DIR, "config", "schema", "config.schema.yaml")
)
# A bad config ends the run with one line per problem, naming the file (or --config) and key path;
# then null removes a key, --config strings are read as the schema's types, a selected experiment
# goes over the config (vlarisk.workflow.config_checks.resolve_config).
try:
    config_checks.check_config_files(workflow.configfiles)
    config = config_checks.resolve_config(config, _schema, overrides=_overrides)
    config_checks.check_schema(
        config, _schema, origins=[(_defaults_file, _defaults), *_layers]
    )
except config_checks.ConfigError as _error:
    sys.exit(f"error: {_error}")
# The schema (generated from vlarisk.core.settings and vlarisk.workflow.config_schema) fills in every key left out.
validate(config, schema="../config/schema/config.schema.yaml", set_default=True)
# Fails here, before any job, on what the schema cannot check (e.g. a group of unknown sources).
PLAN = Plan(config)
# Outputs under results/, or results/experiments/<name>/ for a selected experiment; its rollouts,
# datasets and splits stay the plain run's unless it changes sources, split or detection.alpha.
paths = PLAN.paths


def _split_if_present(path):
    """A split file's JSON, or None when it does not exist yet (or cannot be read)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


# Warned at plan time (a dry run too): calibration successes known to be too few for the alpha.
for _warning in calibration_counts.plan_warnings(PLAN, _split_if_present):
    logger.warning(f"Warning: {_warning}")


wildcard_constraints:
    source=PLAN.source_pattern,
    variant="dataset|heuristic",


def _workflow_path(*parts):
    """A file of the workflow's own folder: relative when that is the working directory (the
    recorded inputs then survive a move of the checkout), absolute otherwise."""
    path = os.path.join(WORKFLOW_DIR, *parts)
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def code_for(script):
    """The workflow script ``script`` (first) and the package modules it imports, as input files,
    from the workflow's own folder. Shell commands run the script as `python {input.code[0]:q}`.
    """
    path = _workflow_path("workflow_scripts", f"{script}.py")
    return [path, *code_inputs.module_closure(path, _workflow_path("src", "vlarisk"))]


# Jobs import this workflow's own package (src/), whatever else is installed.
shell.prefix(
    "set -euo pipefail; export PYTHONPATH="
    + shlex.quote(os.path.join(WORKFLOW_DIR, "src"))
    + '${{PYTHONPATH:+:"$PYTHONPATH"}}; '
)


def planting_flag(wildcards, input):
    return (
        f"--planting {shlex.quote(input.planting)}"
        if "planting" in input.keys()
        else ""
    )


def baselines_flag(wildcards, input):
    """--baselines for an evaluation that has its source's fitted baselines as input."""
    if "baselines" not in input.keys():
        return ""
    files = input.baselines
    return f"--baselines {shlex.join([files] if isinstance(files, str) else files)}"


def task_splits_flag(wildcards, input):
    """--task-split-results for the main evaluation of a source with several task splits."""
    paths = input.task_splits if "task_splits" in input.keys() else []
    return f"--task-split-results {shlex.join(paths)}" if paths else ""


def runs_found_elsewhere():
    """The results.json files under results/ (every experiment's) that the current config does not
    build: globbed only when the comparison is asked for (a rule's params are evaluated per job).
    """
    return PLAN.comparison_runs(runs.find_results(RESULTS_BASE))


def write_data_config(path, entries, log_file):
    """Write a data config for train/evaluate_multi_model.py and note its members in the log."""
    with open(path, "w") as handle:
        json.dump({"datasets": entries}, handle, indent=2)
    with open(log_file, "w") as handle:
        print(f"{path}: {[entry['model_name'] for entry in entries]}", file=handle)
