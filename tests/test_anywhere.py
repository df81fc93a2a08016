"""The workflow as a researcher runs it: their own rollout pickles in a config of nothing but
sources, the Snakefile of a checkout run into a scratch working directory, paths holding a space,
a quote and `$`, the workflow used as a Snakemake module, and named experiments side by side."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from pipeline_utils import copy_project, planned_jobs, snakemake

from vlarisk.data.synthetic import SimulationSpec, write_synthetic_source

pytestmark = pytest.mark.slow  # every test here runs or plans a whole workflow

# A folder name a shell would split, unquote or expand.
AWKWARD = "my data/it's $HOME (v1)"
# The checkout's folder holds a space and a quote but no `$`: Snakemake itself passes the Snakefile's
# path to the process it starts for a `run:` job inside double quotes, where `$HOME` expands.
AWKWARD_CHECKOUT = "my checkout/it's v1"
OWN_CHAIN = {"prepare_dataset": 2, "split_dataset": 2, "train_model": 2, "score_baselines": 2, "evaluate_model": 2}
MULTI = {"write_multi_config": 1, "train_multi_model": 1, "evaluate_multi_model": 1}
REPORT = {"detection_figure": 2, "summary": 1}  # all's report: the summary, a figure per model


def write_rollouts(folder: Path, hidden_dim: int, with_labels: bool, seed: int) -> dict:
    """Real-format rollout pickles of a small source in ``folder``; its `sources` entry."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = SimulationSpec(
        hidden_dim=hidden_dim,
        num_success=40,
        num_failure=80,
        success_steps=(20, 30),
        failure_steps=30,
        num_tasks=4,
        with_labels=with_labels,
        layout="dict" if with_labels else "list",
        seed=seed,
    )
    entry = {"success": str(folder / "success_rollouts.pkl"), "failure": str(folder / "failure_rollouts.pkl")}
    write_synthetic_source(spec, entry["success"], entry["failure"], folder / "planting.npz")
    return entry


@pytest.fixture(scope="module")
def own_sources(tmp_path_factory) -> dict:
    """Two sources of their own pickles under an awkward folder: 16-D labelled, 24-D unlabelled."""
    data = tmp_path_factory.mktemp("own") / AWKWARD
    return {"lab_a": write_rollouts(data / "a", 16, True, 0), "unlab_b": write_rollouts(data / "b", 24, False, 1)}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the project in a folder as awkward as the data's: every script path needs quoting."""
    return copy_project(tmp_path_factory.mktemp("checkout") / AWKWARD_CHECKOUT / "vlarisk")


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (bytecode caches aside) with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def shell_commands(output: str) -> list[str]:
    """The shell commands a dry run with ``-p`` prints (rules with a `run:` block print none)."""
    return [command for command in re.findall(r"^Shell command: (.*)$", output, re.M) if command != "None"]


# ------------------------------------------------------------------------------ own rollouts
def test_adding_sources_to_config_yaml_is_all_it_takes(tmp_path, own_sources):
    """README, 'Using your own rollouts': add them to config/config.yaml as `sources`, nothing else."""
    project = copy_project(tmp_path / "project")
    config_file = project / "config" / "config.yaml"
    config_file.write_text(config_file.read_text() + yaml.safe_dump({"sources": own_sources}, default_flow_style=False))
    assert planned_jobs(project) == {**OWN_CHAIN, **MULTI, **REPORT, "all": 1}
    ablations = planned_jobs(project, "paper")
    assert {key.split("_")[0] for key in ablations} >= {"train", "evaluate", "paper"}
    result = snakemake(project, "-n", "paper")
    assert "source=lab_a, cell=" in result.stdout and "source=unlab_b, cell=" not in result.stdout  # ablations: the first source


# ---------------------------------------------------------------------------------- quoting
def test_every_path_in_the_shell_commands_is_quoted(tmp_path, checkout, own_sources):
    (tmp_path / "my.yaml").write_text(yaml.safe_dump({"sources": own_sources}))
    args = ("-s", str(checkout / "Snakefile"), "--directory", str(tmp_path / AWKWARD), "--configfile", "my.yaml")
    result = snakemake(tmp_path, "-n", "-p", "paper", "compare", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    assert len(commands) > 20
    rollouts = {path for entry in own_sources.values() for path in entry.values()}
    for command in commands:  # each awkward path is one word, whole, after the shell's parsing
        words = shlex.split(command)
        assert words[0] == "python" and words[1].startswith(str(checkout / "workflow_scripts")), command
        awkward = [word for word in words if "it's" in word]
        assert all(word in rollouts or word.startswith(f"{checkout}/") for word in awkward), command
    prepare = [shlex.split(command) for command in commands if "prepare_training_data.py" in command]
    assert {words[words.index("--success") + 1] for words in prepare} == {entry["success"] for entry in own_sources.values()}


def test_preparing_rollouts_from_an_awkward_path_runs(tmp_path, checkout, own_sources):
    """A real job: script, package (PYTHONPATH) and rollouts all under folders with a space, a
    quote and `$`."""
    (tmp_path / "my.yaml").write_text(yaml.safe_dump({"sources": own_sources}))
    scratch = tmp_path / AWKWARD
    args = ("-s", str(checkout / "Snakefile"), "--directory", str(scratch), "--configfile", "my.yaml")
    result = snakemake(tmp_path, "--cores", "1", "results/datasets/unlab_b/dataset.vlarisk", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    dataset = scratch / "results/datasets/unlab_b/dataset.vlarisk"
    metadata = dataset.read_bytes() if dataset.is_file() else (dataset / "metadata.json").read_bytes()
    assert own_sources["unlab_b"]["failure"].encode() in metadata  # the dataset names the rollouts it read


# ---------------------------------------------------------------------------------- anywhere
def test_a_scratch_directory_plans_like_the_checkout(tmp_path, checkout, own_sources):
    (tmp_path / "my.yaml").write_text(yaml.safe_dump({"sources": own_sources}))
    before = files_of(checkout)
    args = ("-s", str(checkout / "Snakefile"), "--directory", str(tmp_path / "scratch"), "--configfile", "my.yaml")
    assert planned_jobs(tmp_path, *args) == {**OWN_CHAIN, **MULTI, **REPORT, "all": 1}
    assert files_of(checkout) == before


def test_used_as_a_module(tmp_path, checkout, own_sources):
    """docs/anywhere.md: `module vlarisk: snakefile: <checkout>/Snakefile, config: config`."""
    (tmp_path / "my.yaml").write_text(yaml.safe_dump({"sources": own_sources, "training": {"epochs": 2}}))
    (tmp_path / "Snakefile").write_text(
        f"""configfile: "my.yaml"


module vlarisk:
    snakefile:
        {str(checkout / "Snakefile")!r}
    config:
        config


use rule * from vlarisk as vlarisk_*
"""
    )
    result = snakemake(tmp_path, "-n", "-p", "vlarisk_all")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rule vlarisk_train_model:" in result.stdout and "rule vlarisk_train_multi_model:" in result.stdout
    trainings = [command for command in shell_commands(result.stdout) if "train_risk_predictor.py" in command]
    assert len(trainings) == 2 and all(" --epochs 2 " in command for command in trainings)
    assert all(shlex.split(command)[1] == str(checkout / "workflow_scripts/train_risk_predictor.py") for command in trainings)


# ------------------------------------------------------------------------------ as a researcher
@pytest.mark.slow
def test_own_sources_in_scratch_with_overrides_and_experiments(tmp_path, checkout, own_sources):
    """Two own sources (16-D labelled, 24-D unlabelled), a config of nothing but them, the checkout's
    Snakefile run into a scratch folder with `--config 'training={epochs: 3}'`; then two named
    experiments beside the plain run, and the comparison of all of them."""
    (tmp_path / "my.yaml").write_text(yaml.safe_dump({"sources": own_sources}))
    scratch, before = tmp_path / "scratch", files_of(checkout)
    where = ("-s", str(checkout / "Snakefile"), "--directory", str(scratch), "--cores", "2")
    run = ("all", *where, "--configfile", "my.yaml", "--config", "training={epochs: 3}")
    result = snakemake(tmp_path, *run)
    assert result.returncode == 0, result.stderr[-5000:]
    for source in own_sources:
        results = json.loads((scratch / f"results/models/{source}/results.json").read_text())
        assert results["config"]["epochs"] == 3 and len(results["history"]["train_loss"]) == 3
        with open(scratch / f"results/models/{source}/history.csv") as handle:
            assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3"]
    assert json.loads((scratch / "results/multi/all_sources/results.json").read_text())["config"]["epochs"] == 3
    assert planned_jobs(tmp_path, *run[1:]) == {}  # a second run has nothing to do
    assert files_of(checkout) == before  # nothing written into the checkout

    (tmp_path / "experiments.yaml").write_text(
        yaml.safe_dump(
            {
                "experiments": {
                    name: {"training": {"lr": lr}, "multi_model": {"groups": {}}} for name, lr in (("lr_high", 0.01), ("lr_low", 0.0003))
                }
            }
        )
    )
    plain = (scratch / "results/models/lab_a/results.json").stat().st_mtime_ns
    for name in ("lr_high", "lr_low"):
        result = snakemake(
            tmp_path,
            "compare",
            *where,
            "--configfile",
            "my.yaml",
            "experiments.yaml",
            "--config",
            "training={epochs: 3}",
            f"experiment={name}",
        )
        assert result.returncode == 0, result.stderr[-5000:]
    for name, lr in (("lr_high", 0.01), ("lr_low", 0.0003)):
        for source in own_sources:
            results = json.loads((scratch / f"results/experiments/{name}/models/{source}/results.json").read_text())
            assert results["config"]["lr"] == lr and results["config"]["epochs"] == 3
    assert (scratch / "results/models/lab_a/results.json").stat().st_mtime_ns == plain  # the plain run is left alone
    with open(scratch / "results/comparison/runs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(row["experiment"], row["kind"], row["name"], row["lr"]) for row in rows} == {
        ("(plain)", "model", "lab_a", "0.001"),
        ("(plain)", "model", "unlab_b", "0.001"),
        ("(plain)", "multi", "all_sources", "0.001"),
        *{(name, "model", source, lr) for name, lr in (("lr_high", "0.01"), ("lr_low", "0.0003")) for source in own_sources},
    }
    assert all(row["test_mean_auc"] for row in rows if row["name"] == "lab_a")
    assert "| lr_high | model | lab_a |" in (scratch / "results/comparison/runs.md").read_text()
    assert files_of(checkout) == before
