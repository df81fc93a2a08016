"""Failure detection through the guide's commands: held-out tasks, the calibrated alarm stored in
the checkpoint, and ``results.json``'s ``detection`` contract, checked against a plain re-computation."""

from __future__ import annotations

import json
import runpy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_detection import CONTRACT, DEPLOYED

from vlarisk.data.dataset import load_dataset
from vlarisk.data.documents import read_checkpoint
from vlarisk.data.synthetic import SimulationSpec, write_synthetic_source
from vlarisk.model.checkpoints import load_predictor
from vlarisk.model.steering import RiskMonitor

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow_scripts"
SPEC = dict(hidden_dim=16, num_success=90, num_failure=90, success_steps=(20, 40), failure_steps=(20, 40), num_tasks=8, seed=3)


def command(script: str, *args) -> None:
    """Run a workflow script as ``python workflow_scripts/<script> args`` would, in this process."""
    argv = sys.argv
    sys.argv = [str(SCRIPTS / script), *map(str, args)]
    try:
        runpy.run_path(str(SCRIPTS / script), run_name="__main__")
    finally:
        sys.argv = argv


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory):
    """Real-format pickles -> prepare -> split with two held-out tasks -> train with --split."""
    root = tmp_path_factory.mktemp("guide")
    success, failure = root / "success_rollouts.pkl", root / "failure_rollouts.pkl"
    write_synthetic_source(SimulationSpec(**SPEC), success, failure, root / "planting.npz")
    data = root / "dataset.vlarisk"
    command("prepare_training_data.py", "--success", success, "--failure", failure, "--output", data)
    command("split_dataset.py", "--data", data, "--output", root / "split.json", "--held-out-tasks", "2", "5")
    command(
        "train_risk_predictor.py",
        "--data",
        data,
        "--split",
        root / "split.json",
        "--output-dir",
        root / "model",
        "--epochs",
        "2",
        "--n-boot",
        "200",
    )
    return root


def test_results_carry_the_detection_contract_per_test_set(guide_run):
    results = json.loads((guide_run / "model" / "results.json").read_text())
    split = json.loads((guide_run / "split.json").read_text())
    outcome = {r["rollout_id"]: r["success"] for r in load_dataset(guide_run / "dataset.vlarisk").metadata["rollouts"]}
    assert set(results["detection"]) == {"test_seen", "test_unseen"}
    for name, block in results["detection"].items():
        assert CONTRACT <= set(block)
        assert block["n_rollouts"] == {"success": sum(outcome[i] for i in split[name]), "failure": sum(not outcome[i] for i in split[name])}
        assert DEPLOYED <= set(block["deployed"]) and block["deployed"]["n_rollouts"] == block["n_rollouts"]
        assert block["conformal_valid"] is True and block["deployed"]["n_calibration"] == len(split["calibration"])
        assert set(block["baselines"]) >= {"logistic", "knn", "mahalanobis", "episode_length", "abs_action"}
        for scorer in ("knn", "mahalanobis"):
            assert DEPLOYED <= set(block["baselines"][scorer]["deployed"]) and block["baselines"][scorer]["ci95"]["rollout_auc"]
        # false alarms on held-out successes: at most alpha plus three binomial standard errors
        n = block["n_rollouts"]["success"]
        assert block["fpr"] <= block["alpha"] + 3 * np.sqrt(block["alpha"] * (1 - block["alpha"]) / n)


def test_unseen_rollout_auc_matches_a_plain_recomputation(guide_run):
    """Independent reference: loops over the held-out tasks' rollouts, each cut at the shortest
    calibration rollout (the unseen tasks have none of their own a monitor could know)."""
    results = json.loads((guide_run / "model" / "results.json").read_text())
    dataset = load_dataset(guide_run / "dataset.vlarisk")
    split = json.loads((guide_run / "split.json").read_text())
    model = load_predictor(guide_run / "model" / "best_model.pt")
    by_rollout = {r["rollout_id"]: r for r in dataset.metadata["rollouts"]}
    horizon = min(by_rollout[rid]["num_steps"] for rid in split["calibration"])
    scores, failed = [], []
    for rid in split["test_unseen"]:
        rows = np.flatnonzero(np.asarray(dataset.rollout_id) == rid)
        steps = np.asarray(dataset.arrays["step_index"][rows])
        keep = rows[steps < horizon]
        with torch.no_grad():
            risk = model(torch.from_numpy(np.asarray(dataset.hidden[keep], dtype=np.float32))).numpy()
        scores.append(risk.max())
        failed.append(not by_rollout[rid]["success"])
    assert results["detection"]["test_unseen"]["rollout_auc"] == pytest.approx(roc_auc_score(failed, scores), abs=1e-6)


def test_checkpoint_stores_the_alarm_and_the_monitor_uses_it(guide_run):
    path = guide_run / "model" / "best_model.pt"
    alarm = read_checkpoint(path)["alarm"]
    results = json.loads((guide_run / "model" / "results.json").read_text())
    assert alarm["calibration_set"] == "calibration" and alarm["alpha"] == 0.1
    assert alarm["threshold"] >= alarm["threshold_at_horizon"]  # whole episodes reach at least the cut maxima
    # the deployed monitor of every test set is evaluated at the stored whole-episode threshold
    for block in results["detection"].values():
        assert block["deployed"]["threshold"] == pytest.approx(alarm["threshold"])
    # Independent reference: the ceil((n+1)(1-alpha))-th smallest whole-episode maximum of the calibration rollouts
    dataset, split = load_dataset(guide_run / "dataset.vlarisk"), json.loads((guide_run / "split.json").read_text())
    model = load_predictor(path)
    maxima = []
    for rid in split["calibration"]:
        rows = np.flatnonzero(np.asarray(dataset.rollout_id) == rid)
        with torch.no_grad():
            maxima.append(float(model(torch.from_numpy(np.asarray(dataset.hidden[rows], dtype=np.float32))).max()))
    rank = int(np.ceil((len(maxima) + 1) * 0.9))
    assert alarm["n_calibration"] == len(split["calibration"]) and alarm["conformal_valid"] is True
    assert alarm["threshold"] == pytest.approx(sorted(maxima)[rank - 1], abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: the calibrated threshold is found
        monitor = RiskMonitor(path)
    torch.testing.assert_close(monitor.threshold, torch.full((7,), alarm["threshold"]))


def test_monitor_without_a_calibrated_threshold_warns_and_uses_half(guide_run):
    model = load_predictor(guide_run / "model" / "best_model.pt")
    with pytest.warns(UserWarning, match="no calibrated alarm threshold"):
        monitor = RiskMonitor(model)
    assert float(monitor.threshold[0]) == 0.5


def test_monitor_says_why_a_checkpoint_holds_no_threshold(guide_run, tmp_path):
    checkpoint = torch.load(guide_run / "model" / "best_model.pt", weights_only=True)
    too_few = "3 calibration successes are too few for alpha 0.1: at least 9 are needed for a finite threshold"
    checkpoint["alarm"] = {**checkpoint["alarm"], "threshold": None, "warning": too_few}
    torch.save(checkpoint, tmp_path / "best_model.pt")
    with pytest.warns(UserWarning, match=f"no calibrated alarm threshold \\({too_few}\\): alarming at 0.5"):
        RiskMonitor(tmp_path / "best_model.pt")


def test_multi_model_detection_is_per_source_with_each_sources_alarm(guide_run, tmp_path):
    """Scores of different input layers are not ranked together: detection and alarms are per source."""
    config = tmp_path / "data.json"
    data = str(guide_run / "dataset.vlarisk")
    entries = [{"model_name": name, "data_path": data, "split_path": str(guide_run / "split.json")} for name in ("a", "b")]
    config.write_text(json.dumps({"datasets": entries}))
    command("train_multi_model.py", "--data-config", config, "--output-dir", tmp_path / "multi", "--epochs", "1", "--n-boot", "50")
    results = json.loads((tmp_path / "multi" / "results.json").read_text())
    assert "detection" not in results
    for name in ("a", "b"):
        assert set(results["per_source"][name]["detection"]) == {"test_seen", "test_unseen"}
    sources = read_checkpoint(tmp_path / "multi" / "best_model.pt")["sources"]
    assert all(sources[name]["alarm"]["threshold"] is not None for name in ("a", "b"))
    threshold = sources["b"]["alarm"]["threshold"]
    torch.testing.assert_close(RiskMonitor(tmp_path / "multi" / "best_model.pt", source="b").threshold, torch.full((7,), threshold))


def test_detection_tables_and_figure_come_from_the_results(guide_run, tmp_path):
    model = guide_run / "model"
    command(
        "evaluate_risk_predictor.py", "--checkpoint", model / "best_model.pt", "--data", guide_run / "dataset.vlarisk",
        "--split", guide_run / "split.json", "--output", tmp_path / "results.json", "--predictions", tmp_path / "p.npz", "--n-boot", "200",
    )  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["detection"] == json.loads((model / "results.json").read_text())["detection"]  # same split, same numbers
    command("make_tables.py", "--output-prefix", tmp_path / "detection", "detection", "--single", "src", tmp_path / "results.json")
    sidecar = json.loads((tmp_path / "detection.json").read_text())
    rows = {(row["labels"]["source"], row["labels"]["test set"], row["labels"]["scorer"]): row["cells"] for row in sidecar["rows"]}
    unseen = results["detection"]["test_unseen"]
    assert rows[("src", "test_unseen", "single")]["earliest-stop AUC (SAFE)"]["mean"] == unseen["rollout_auc"]
    assert rows[("src", "test_unseen", "single")]["AUC 95% low"]["mean"] == unseen["ci95"]["rollout_auc"][0]
    assert rows[("src", "test_unseen", "single")]["bal. acc. 95% high"]["mean"] == unseen["deployed"]["ci95"]["balanced_accuracy"][1]
    logistic = unseen["baselines"]["logistic"]
    assert rows[("src", "test_unseen", "logistic baseline")]["deployed FPR"]["mean"] == logistic["deployed"]["fpr"]
    knn = unseen["baselines"]["knn"]
    assert (
        rows[("src", "test_unseen", "cosine kNN (success - failure)")]["rel. detection time"]["mean"]
        == knn["deployed"]["relative_detection_time_mean"]
    )
    assert [labels[1] for labels in rows][0] == "test_unseen"  # unseen tasks lead
    for name in ("first", "second"):
        command("make_figures.py", "--output", tmp_path / f"{name}.png", "detection", "--predictions", tmp_path / "p.npz",
                "--results", tmp_path / "results.json", "--title", "src")  # fmt: skip
    assert (tmp_path / "first.png").read_bytes() == (tmp_path / "second.png").read_bytes()


def test_a_split_without_calibration_rollouts_is_marked_not_conformally_valid(guide_run, tmp_path, capsys):
    """An older split file has no calibration part: the alarm falls back to validation successes,
    and results.json, the evaluation log and every detection table row say the bound does not hold."""
    split = json.loads((guide_run / "split.json").read_text())
    split["val"] = sorted(split["val"] + split.pop("calibration"))
    (tmp_path / "split.json").write_text(json.dumps(split))
    command(
        "evaluate_risk_predictor.py", "--checkpoint", guide_run / "model" / "best_model.pt", "--data", guide_run / "dataset.vlarisk",
        "--split", tmp_path / "split.json", "--output", tmp_path / "results.json", "--n-boot", "20",
    )  # fmt: skip
    assert "detection thresholds are NOT conformally valid" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    for block in results["detection"].values():
        assert block["conformal_valid"] is False and "validation successes" in block["conformal_reason"]
    command("make_tables.py", "--output-prefix", tmp_path / "detection", "detection", "--single", "src", tmp_path / "results.json")
    sidecar = json.loads((tmp_path / "detection.json").read_text())
    assert sidecar["rows"] and all("NOT conformally valid" in row["labels"]["scorer"] for row in sidecar["rows"])


def test_monitor_with_the_stored_band_alarms_where_a_plain_loop_does(guide_run):
    path = guide_run / "model" / "best_model.pt"
    band = read_checkpoint(path)["alarm"]["band"]
    assert band["quantile"] is not None and len(band["mean"]) == len(band["sd"]) and band["shape_from"] == "training-split successes"
    dataset, split = load_dataset(guide_run / "dataset.vlarisk"), json.loads((guide_run / "split.json").read_text())
    monitor, model = RiskMonitor(path, alarm="band"), load_predictor(path)
    for rid in split["test_seen"][:4]:
        rows = np.flatnonzero(np.asarray(dataset.rollout_id) == rid)
        hidden = torch.from_numpy(np.asarray(dataset.hidden[rows], dtype=np.float32))
        with torch.no_grad():
            risk = model(hidden).numpy().max(axis=1)
        expected = []
        for t, value in enumerate(risk):  # the band's last step holds beyond its end
            at = min(t, len(band["mean"]) - 1)
            expected.append(bool(value > band["mean"][at] + band["quantile"] * band["sd"][at]))
        monitor.reset()
        assert [monitor.update(state).alarm for state in hidden] == expected
    with pytest.raises(ValueError, match="needs a checkpoint path"):
        RiskMonitor(model, alarm="band")
