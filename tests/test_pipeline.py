"""End to end: the tiny pipeline builds everything once, then rebuilds only what a change touches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from pipeline_utils import copy_project, planned_jobs, snakemake

pytestmark = pytest.mark.slow  # every test here runs or plans a whole workflow

SOURCES = ("tiny_a", "tiny_b")
CONFIG = ("--configfile", "tests/data/tiny_config.yaml")
# the jobs from one simulated source's rollouts to its results.json
ONE_SOURCE_CHAIN = {
    "simulate_rollouts": 1,
    "prepare_dataset": 1,
    "split_dataset": 1,
    "train_model": 1,
    "score_baselines": 1,
    "evaluate_model": 1,
}


@pytest.fixture(scope="module")
def built_run(tmp_path_factory) -> tuple[Path, str]:
    """The tiny pipeline built once: its folder and what Snakemake printed to the terminal."""
    workdir = copy_project(tmp_path_factory.mktemp("pipeline"))
    result = snakemake(workdir, "--cores", "2", *CONFIG)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, result.stdout + result.stderr


@pytest.fixture(scope="module")
def built(built_run) -> Path:
    return built_run[0]


def expected_outputs(source: str) -> list[str]:
    return [
        f"results/rollouts/{source}/success_rollouts.pkl",
        f"results/rollouts/{source}/failure_rollouts.pkl",
        f"results/rollouts/{source}/planting.npz",
        f"results/datasets/{source}/dataset.vlarisk",
        f"results/splits/{source}.json",
        f"results/models/{source}/best_model.pt",
        f"results/models/{source}/latest.pt",
        f"results/models/{source}/results.json",
        f"results/logs/train_model/{source}.log",
        f"results/logs/evaluate_model/{source}.log",
        f"results/benchmarks/train_model/{source}.tsv",
        f"results/benchmarks/prepare_dataset/{source}.dataset.tsv",
    ]


def test_every_output_exists(built):
    missing = [path for source in SOURCES for path in expected_outputs(source) if not (built / path).exists()]  # a dataset is a folder
    assert not missing


@pytest.mark.parametrize("source", SOURCES)
def test_learned_auc_keeps_up_with_the_logistic_baseline(built, source):
    """The pipeline's model learns: no collapse, and within 0.03 mean AUC of the logistic baseline."""
    results = json.loads((built / f"results/models/{source}/results.json").read_text())
    versus = results["baselines"]["model_vs_logistic"]
    assert not results["collapsed"], results["collapse"]
    assert versus["model_mean_auc"] > 0.7, versus
    assert versus["margin"] >= -0.03, versus
    assert versus["beats_logistic"] == (versus["margin"] > 0)
    assert results["provenance"]["dataset_sha256"]


def test_the_verdict_names_every_model(built):
    text = (built / "results/summary.md").read_text()
    assert all(f"| model {source} |" in text for source in SOURCES), text
    results = json.loads((built / f"results/models/{SOURCES[0]}/results.json").read_text())
    assert results["summary"]["step_mean_auc"] == results["baselines"]["model_vs_logistic"]["model_mean_auc"]


def test_training_shows_each_epoch_on_the_terminal_and_in_its_log(built_run):
    """The rule's log keeps the full epoch lines; the terminal gets one short line per epoch."""
    workdir, terminal = built_run
    epochs = yaml.safe_load((workdir / CONFIG[1]).read_text())["training"]["epochs"]
    for source in SOURCES:
        shown = re.findall(rf"^{source}: epoch (\d+)/{epochs}  train loss [\d.]+  val loss [\d.]+  val AUC \S+  [\d.]+ s$", terminal, re.M)
        assert [int(epoch) for epoch in shown] == list(range(1, epochs + 1)), terminal[-3000:]
        logged = (workdir / f"results/logs/train_model/{source}.log").read_text()
        assert len(re.findall(r"^epoch +\d+/", logged, re.M)) == epochs


def test_second_run_has_nothing_to_do(built):
    assert planned_jobs(built, *CONFIG) == {}


def test_changing_one_sources_hyperparameter_retrains_only_that_source(built, tmp_path):
    config = yaml.safe_load((built / CONFIG[1]).read_text())
    config["sources"]["tiny_a"]["training"] = {"epochs": 3}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    plan = planned_jobs(built, "--configfile", str(changed))
    assert plan == {"train_model": 1, "evaluate_model": 1, "detection_figure": 1, "summary": 1, "all": 1}
    result = snakemake(built, "-n", "--configfile", str(changed))
    assert "wildcards: source=tiny_a" in result.stdout and "source=tiny_b" not in result.stdout


def test_changing_one_sources_rollouts_rebuilds_only_its_chain(built, tmp_path):
    config = yaml.safe_load((built / CONFIG[1]).read_text())
    config["sources"]["tiny_b"]["simulate"]["seed"] = 7
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    plan = planned_jobs(built, "--configfile", str(changed))
    assert plan == {**ONE_SOURCE_CHAIN, "detection_figure": 1, "summary": 1, "all": 1}


def test_changing_metric_code_reruns_evaluation_only(built):
    metrics = built / "src/vlarisk/score/metrics.py"
    original = metrics.read_text()
    try:
        metrics.write_text(original + "\n# a change to the metric code\n")
        assert planned_jobs(built, *CONFIG) == {"score_baselines": 2, "evaluate_model": 2, "detection_figure": 2, "summary": 1, "all": 1}
    finally:
        metrics.write_text(original)


def test_single_target_builds_one_source(tmp_path):
    workdir = copy_project(tmp_path)
    plan = planned_jobs(workdir, "results/models/tiny_b/results.json", *CONFIG)
    assert plan == ONE_SOURCE_CHAIN
