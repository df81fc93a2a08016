# Config validation and the helpers every rule file uses.
import importlib.util
import json
import os

from snakemake.utils import validate


def _load_standalone(module):
    """One module of src/vlarisk alone: importing the package would import torch on every run."""
    path = os.path.join(workflow.basedir, "src", "vlarisk", f"{module}.py")
    spec = importlib.util.spec_from_file_location(f"vlarisk_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


# YAML keeps only the last of two equal keys (e.g. two sources of one name): refuse them.
_config_checks = _load_standalone("config_checks")
# Which package modules each workflow script imports: a rule's code inputs.
_code_inputs = _load_standalone("code_inputs")
_config_checks.check_config_files(_config_checks.effective_config_files(workflow))
validate(config, schema="../config/schema/config.schema.yaml")

SOURCES = list(config["sources"])


wildcard_constraints:
    source="|".join(SOURCES) if SOURCES else "none",
    variant="dataset|heuristic",


def code_for(script):
    """The workflow script ``script`` and the package modules it imports, as input files."""
    path = f"workflow_scripts/{script}.py"
    return [path, *_code_inputs.module_closure(path, "src/vlarisk")]


def source_config(source):
    return config["sources"][source]


def is_simulated(source):
    return "simulate" in source_config(source)


def rollout_files(wildcards):
    """The source's rollout pickles: simulated under results/, or the user's own files."""
    if is_simulated(wildcards.source):
        prefix = f"results/rollouts/{wildcards.source}"
        return {
            "success": f"{prefix}/success_rollouts.pkl",
            "failure": f"{prefix}/failure_rollouts.pkl",
        }
    source = source_config(wildcards.source)
    return {"success": source["success"], "failure": source["failure"]}


def planting_file(wildcards):
    """The planting record of a synthetic source (for the planted-direction scorer), none for real data."""
    if is_simulated(wildcards.source):
        return {"planting": f"results/rollouts/{wildcards.source}/planting.npz"}
    return {}


def planting_flag(wildcards, input):
    return f"--planting {input.planting}" if "planting" in input.keys() else ""


def labelling_flag(wildcards):
    if wildcards.variant == "heuristic":
        return "--heuristic-labels"
    return (
        "--require-labels"
        if source_config(wildcards.source).get("require_labels")
        else ""
    )


def training_settings(source, **overrides):
    """Global training settings, then the source's own, then explicit overrides."""
    return {
        **config["training"],
        **source_config(source).get("training", {}),
        **overrides,
    }


def training_flags(settings):
    """Command-line flags of train_risk_predictor.py for a settings dict."""
    hidden_dims = " ".join(str(width) for width in settings["hidden_dims"])
    flags = [
        f"--epochs {settings['epochs']}",
        f"--batch-size {settings['batch_size']}",
        f"--lr {settings['lr']}",
        f"--weight-decay {settings['weight_decay']}",
        f"--hidden-dims {hidden_dims}",
        f"--dropout {settings['dropout']}",
        f"--activation {settings['activation']}",
        f"--loss-type {settings['loss_type']}",
        "--normalize" if settings["normalize"] else "--no-normalize",
        f"--seed {settings['seed']}",
        f"--device {settings['device']}",
        f"--positive-fraction {config['evaluation']['positive_fraction_of_max']}",
    ]
    if settings["bf16"]:
        flags.append("--bf16")
    return " ".join(flags)
