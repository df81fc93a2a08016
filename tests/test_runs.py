"""Comparing runs (vlarisk.workflow.runs, workflow_scripts/compare_runs.py) and per-epoch tracking (vlarisk.train.tracking)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pipeline_utils import load_script

from vlarisk.core.errors import InputError
from vlarisk.train import tracking
from vlarisk.workflow import runs


def results(lr: float, auc: float | None, epochs: int = 2) -> dict:
    return {
        "model_name": "m",
        "config": {"epochs": epochs, "lr": lr, "hidden_dims": [32], "seed": 0, "loss_type": "bce"},
        "test_metrics": {"mean_auc": auc, "mean_ap": 0.5, "mse": 0.01},
        "baselines": {"model_vs_logistic": {"logistic_mean_auc": 0.8, "margin": None if auc is None else auc - 0.8}},
        "history": {"train_loss": [0.3] * epochs},
        "collapsed": False,
    }


def write(path: Path, payload) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def test_rows_name_experiment_kind_and_settings(tmp_path):
    root = tmp_path / "results"
    write(root / "models/a/results.json", results(0.001, 0.9))
    write(root / "experiments/lr_small/models/a/results.json", results(0.0001, 0.85))
    write(root / "experiments/lr_small/multi/all_sources/results.json", results(0.0001, None))
    write(root / "ablations/a/dropout-0.3/seed-1/results.json", results(0.001, 0.7))
    found = runs.find_results(root)
    assert len(found) == 4
    rows = runs.collect_rows(found, root)
    assert [(row["experiment"], row["kind"], row["name"]) for row in rows] == [
        ("(plain)", "ablation", "a/dropout-0.3/seed-1"),
        ("(plain)", "model", "a"),
        ("lr_small", "model", "a"),
        ("lr_small", "multi", "all_sources"),
    ]
    assert rows[2]["lr"] == 0.0001 and rows[2]["hidden_dims"] == "32" and rows[2]["epochs_run"] == 2
    assert rows[3]["test_mean_auc"] is None and rows[1]["margin_vs_logistic"] == 0.9 - 0.8


def test_unreadable_results_are_left_out_with_a_line(tmp_path):
    good = write(tmp_path / "results/models/a/results.json", results(0.001, 0.9))
    broken = write(tmp_path / "results/models/b/results.json", {})
    broken.write_text("{not json")
    lines = []
    rows = runs.collect_rows([good, broken, write(tmp_path / "results/models/c/results.json", [1])], tmp_path / "results", lines.append)
    assert [row["name"] for row in rows] == ["a"]
    assert lines[0].startswith(f"{broken}: left out of the comparison") and "not a results.json" in lines[1]


def test_the_stamp_changes_when_a_run_changes(tmp_path):
    path = write(tmp_path / "results.json", results(0.001, 0.9))
    before = runs.results_stamp([path])
    assert runs.results_stamp([path]) == before
    write(path, results(0.001, 0.91, epochs=3))
    assert runs.results_stamp([path]) != before
    assert runs.results_stamp([]) != before


def test_the_script_writes_csv_and_markdown(tmp_path, capsys):
    root = tmp_path / "results"
    write(root / "models/a/results.json", results(0.001, 0.9))
    write(root / "experiments/e/models/a/results.json", results(0.01, 0.8))
    load_script("compare_runs").main(
        [str(root), "--root", str(root), "--csv", str(tmp_path / "t.csv"), "--markdown", str(tmp_path / "t.md")]
    )
    with open(tmp_path / "t.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [(row["experiment"], row["lr"], row["test_mean_auc"]) for row in table] == [("(plain)", "0.001", "0.9"), ("e", "0.01", "0.8")]
    markdown = (tmp_path / "t.md").read_text()
    assert "| experiment | kind | name | lr |" in markdown and "Same in every run: epochs 2" in markdown


def test_rows_carry_detection_provenance_and_sort(tmp_path):
    root = tmp_path / "results"
    for name, auc, fpr in (("a", 0.7, 0.1), ("b", 0.9, None), ("c", None, None)):
        payload = results(0.001, 0.9)
        payload["summary"] = {"rollout_auc": auc, "rollout_auc_ci95": [auc - 0.1, auc + 0.05] if auc else None, "fpr": fpr, "tpr": 0.5}
        payload["provenance"] = {"code_version": "vlarisk 0.1.0 (abc)", "training_seconds": 3.0, "evaluation_seconds": 1.5}
        write(root / f"models/{name}/results.json", payload)
    rows = runs.collect_rows(runs.find_results(root), root)
    first = rows[0]
    assert (first["rollout_auc"], first["rollout_auc_low"], first["fpr"], first["tpr"]) == (0.7, 0.7 - 0.1, 0.1, 0.5)
    assert first["code_version"] == "vlarisk 0.1.0 (abc)" and first["seconds"] == 4.5 and first["date"]
    assert [row["name"] for row in runs.sort_rows(rows, "rollout_auc")] == ["b", "a", "c"]  # best first, blank last
    assert [row["name"] for row in runs.sort_rows(rows, "fpr")] == ["a", "b", "c"]


def test_a_missing_folder_is_an_error(tmp_path, capsys):
    with pytest.raises(InputError, match=f"^{tmp_path / 'nothere'}: no such file or folder"):
        load_script("compare_runs").main([str(tmp_path / "nothere")])
    assert capsys.readouterr().out == ""


def test_a_rerun_keeps_the_earlier_version_in_the_history(tmp_path, capsys):
    """The summary step archives each run under results/history/ once per id; after a re-run
    overwrote results.json, `--history` tables both versions, the current one once."""
    import hashlib
    import os

    root = tmp_path / "results"
    current = write(root / "experiments/e/models/a/results.json", results(0.001, 0.8))
    os.utime(current, (1_700_000_000, 1_700_000_000))  # 2023-11-14 22:13:20 UTC
    first_id = hashlib.sha256(current.read_bytes()).hexdigest()[:12]
    first = runs.archive_run(current, root)
    assert first == root / f"history/experiments/e/models/a/20231114T221320Z_{first_id}.json"
    assert runs.archive_run(current, root) == first and len(runs.find_history(root)) == 1  # once per id
    write(current, results(0.001, 0.9))  # the re-run
    second = runs.archive_run(current, root)
    assert first.is_file() and second != first and len(runs.find_history(root)) == 2
    assert runs.archive_run(tmp_path / "elsewhere/results.json", root) is None
    load_script("compare_runs").main([str(root), "--root", str(root), "--history", "--csv", str(tmp_path / "t.csv")])
    with open(tmp_path / "t.csv") as handle:
        table = list(csv.DictReader(handle))
    second_id = hashlib.sha256(current.read_bytes()).hexdigest()[:12]
    assert [(row["experiment"], row["kind"], row["name"], row["run_id"], row["test_mean_auc"]) for row in table] == [
        ("e", "model", "a", first_id, "0.8"),
        ("e", "model", "a", second_id, "0.9"),
    ]


# ------------------------------------------------------------------------------- tracking
def history(epochs: int) -> dict:
    return {
        "train_loss": [0.5 / (e + 1) for e in range(epochs)],
        "val_loss": [0.4] * epochs,
        "val_metrics": [{"loss": 0.4, "mean_auc": 0.7 + e / 100, "collapse": [], "per_source": {"a": {}}} for e in range(epochs)],
        "epoch_seconds": [1.0] * epochs,
        "samples_per_second": [1000.0] * epochs,
    }


def test_history_csv_has_one_row_per_epoch_rewritten_whole(tmp_path):
    logged = []
    tracker = tracking.EpochTracker(tmp_path, logged.append)
    for epochs in (1, 2, 3):
        tracker.epoch_done(history(epochs))
    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert float(rows[2]["val_mean_auc"]) == 0.72 and rows[0]["collapsed"] == "False" and "val_per_source" not in rows[0]
    assert not list(tmp_path.glob(".*partial"))
    if tracker.writer is None:  # without tensorboard: said once, and nothing else written
        assert logged == ["tensorboard is not installed: per-epoch metrics go to history.csv only"]
        assert not (tmp_path / "tensorboard").exists()
