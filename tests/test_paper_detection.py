"""`snakemake paper` builds the detection tables and figures, and the HTML report shows them."""

from __future__ import annotations

import json

import pytest
from pipeline_utils import copy_project, planned_jobs, planned_wildcards, snakemake

CONFIG = """\
sources:
  six_tasks:
    simulate: {hidden_dim: 16, num_success: 90, num_failure: 90, success_steps: [20, 40], failure_steps: [20, 40], num_tasks: 6,
               failure_drift: 3.0, with_labels: true, layout: dict, seed: 0}
split: {held_out_tasks: auto, n_task_splits: 2}
training: {epochs: 3, batch_size: 128, hidden_dims: [32], dropout: 0.0, device: cpu}
detection: {n_boot: 100}
multi_model: {groups: {}}
ablations: {factors: {}}
"""
DETECTION_FILES = [
    *(
        f"results/paper/tables/{name}.{ext}"
        for name in ("detection", "detection_per_dimension")
        for ext in ("md", "tex", "csv", "html", "json")
    ),
    "results/paper/figures/detection/six_tasks.png",
]


@pytest.mark.slow
def test_paper_builds_detection_tables_figures_and_report(tmp_path):
    project = copy_project(tmp_path / "project")
    (project / "six.yaml").write_text(CONFIG)
    built = snakemake(project, "--cores", "2", "paper", "--configfile", "six.yaml")
    assert built.returncode == 0, built.stderr[-3000:]
    for path in DETECTION_FILES:
        assert (project / path).stat().st_size > 0, path
    results = json.loads((project / "results/models/six_tasks/results.json").read_text())
    assert set(results["detection"]) == {"test_seen", "test_unseen"}  # 6 tasks: one held out by `auto`
    second = json.loads((project / "results/models/six_tasks/task-split-1/results.json").read_text())
    over_splits = results["detection"]["test_unseen"]["splits"]["rollout_auc"]
    assert over_splits["values"] == [results["detection"]["test_unseen"]["rollout_auc"], second["detection"]["test_unseen"]["rollout_auc"]]
    table = (project / "results/paper/tables/detection.md").read_text()
    assert f"{over_splits['mean']:.3f} ± {over_splits['sd']:.3f}" in table
    report = snakemake(project, "paper", "--configfile", "six.yaml", "--report", "report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (project / "report.html").read_text(errors="replace")
    assert "Failure detection" in html and "detection_per_dimension" in html


@pytest.mark.slow
def test_a_dry_run_plans_a_model_per_task_split_as_inputs_of_the_main_results(tmp_path):
    project = copy_project(tmp_path / "project")
    (project / "six.yaml").write_text(CONFIG.replace("n_task_splits: 2", "n_task_splits: 3"))
    jobs = planned_jobs(project, "results/models/six_tasks/results.json", "--configfile", "six.yaml")
    assert jobs["split_dataset_task_split"] == jobs["train_task_split"] == jobs["evaluate_task_split"] == 2
    assert jobs["train_model"] == jobs["evaluate_model"] == 1
    planned = planned_wildcards(project, "results/models/six_tasks/results.json", "--configfile", "six.yaml")
    assert ("evaluate_task_split", "source=six_tasks, task_split=2") in planned
