"""Multi-model training: sources of different hidden sizes in one model, scored pooled and per source."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pipeline_utils import copy_project, planned_jobs, snakemake

from vlarisk.core.errors import InputError
from vlarisk.core.settings import TrainingConfig
from vlarisk.data.dataset import load_dataset
from vlarisk.data.documents import read_checkpoint
from vlarisk.data.label_cutoffs import label_cutoffs_from_dimensions, positive_label_cutoffs
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.splits import split_rows
from vlarisk.data.synthetic import SimulationSpec, write_synthetic_source
from vlarisk.model.checkpoints import load_predictor
from vlarisk.model.models import MultiRiskPredictor, NormalizedMultiRiskPredictor
from vlarisk.score.evaluation import evaluate, evaluate_sources
from vlarisk.score.metrics import test_metrics
from vlarisk.train.normalization import feature_statistics
from vlarisk.train.sources import load_sources, read_data_config
from vlarisk.train.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(epochs=2, batch_size=128, hidden_dims=[16], dropout=0.1, device="cpu", seed=3)


@pytest.fixture(scope="module")
def wide_source(tmp_path_factory):
    """A heuristic-labelled 24-D source, ``(dataset, planting)`` paths."""
    root = tmp_path_factory.mktemp("wide")
    spec = SimulationSpec(
        hidden_dim=24, num_success=20, num_failure=30, success_steps=(20, 30), failure_steps=40, num_tasks=3, with_labels=False, seed=5
    )
    write_synthetic_source(spec, root / "success.pkl", root / "failure.pkl", root / "planting.npz")
    prepare_dataset(root / "success.pkl", root / "failure.pkl", root / "wide.vlarisk")
    return root / "wide.vlarisk", root / "planting.npz"


@pytest.fixture(scope="module")
def data_config(dataset_path, rollout_files, wide_source, tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "multi.json"
    datasets = [
        {"model_name": "narrow", "data_path": str(dataset_path), "planting_path": str(rollout_files[2]), "description": "16-D, labelled"},
        {"model_name": "wide", "data_path": str(wide_source[0]), "planting_path": str(wide_source[1])},
    ]
    path.write_text(json.dumps({"datasets": datasets}))
    return path


def train(data_config, output_dir, **overrides):
    sources = load_sources(data_config, seed=0)
    trainer = Trainer(sources, TrainingConfig(**{**CONFIG, **overrides}), output_dir, "pair", log=lambda _: None)
    return sources, trainer


@pytest.fixture(scope="module")
def trained(data_config, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("multi")
    sources, trainer = train(data_config, output_dir)
    return sources, trainer.fit(), output_dir


def test_sources_of_different_sizes_train_together(trained):
    _, outcome, output_dir = trained
    checkpoint = read_checkpoint(output_dir / "best_model.pt")
    assert {name: info["input_dim"] for name, info in checkpoint["sources"].items()} == {"narrow": 16, "wide": 24}
    for key in (
        "epoch",
        "model_state_dict",
        "optimizer_state_dict",
        "val_loss",
        "val_metrics",
        "model_config",
        "training_config",
        "history",
        "best",
    ):
        assert key in checkpoint, key
    assert set(checkpoint["split"]) == set(checkpoint["data_sha256"]) == {"narrow", "wide"}
    assert len(outcome.history["train_loss"]) == CONFIG["epochs"]
    assert set(outcome.history["val_metrics"][0]["per_source"]) == {"narrow", "wide"}
    assert (output_dir / "latest.pt").is_file()


def test_checkpoint_reloads_as_a_model_on_raw_hidden_states(trained):
    sources, outcome, output_dir = trained
    model = load_predictor(output_dir / "best_model.pt")
    assert isinstance(model, NormalizedMultiRiskPredictor) and not model.training
    for source in sources:
        hidden = torch.from_numpy(np.array(source.dataset.hidden[:5]))
        risk = model(hidden, source.name)
        assert risk.shape == (5, 7) and bool(((risk >= 0) & (risk <= 1)).all())
        torch.testing.assert_close(risk, outcome.model(hidden, source.name))
    with pytest.raises(KeyError, match="unknown source"):
        model(torch.zeros(1, 16), "other")


def test_each_source_is_normalised_with_its_own_training_rows(trained, tmp_path):
    sources, _, output_dir = trained
    checkpoint = read_checkpoint(output_dir / "best_model.pt")
    for source in sources:
        train_rows = split_rows(source.dataset.rollout_id, source.split)["train"]
        mean, std = feature_statistics(source.dataset.hidden, train_rows)
        saved = checkpoint["sources"][source.name]["normalization"]
        np.testing.assert_array_equal(np.asarray(saved["mean"], dtype=np.float32), mean)
        np.testing.assert_array_equal(np.asarray(saved["std"], dtype=np.float32), std)


def test_each_sources_label_cutoffs_are_saved_at_training(trained):
    sources, outcome, output_dir = trained
    checkpoint = read_checkpoint(output_dir / "best_model.pt")
    for source in sources:
        expected = positive_label_cutoffs(np.asarray(source.dataset.labels[split_rows(source.dataset.rollout_id, source.split)["train"]]))
        np.testing.assert_array_equal(label_cutoffs_from_dimensions(checkpoint["sources"][source.name]["label_cutoffs"]), expected)
        np.testing.assert_array_equal(outcome.label_cutoffs[source.name], expected)


def test_per_source_metrics_equal_scoring_each_source_alone(trained):
    sources, outcome, _ = trained
    report = evaluate_sources(outcome.model, sources, outcome.label_cutoffs, torch.device("cpu"))
    for source in sources:
        rows = split_rows(source.dataset.rollout_id, source.split)
        labels = np.asarray(source.dataset.labels[rows["test"]])
        label_cutoffs = positive_label_cutoffs(np.asarray(source.dataset.labels[rows["train"]]))
        with torch.inference_mode():
            states, inverse = np.unique(source.dataset.state_index[rows["test"]], return_inverse=True)  # scored once per state
            prediction = outcome.model(torch.from_numpy(source.dataset.states[states]), source.name).numpy()[inverse]
        alone = test_metrics(prediction, labels, label_cutoffs)
        entry = report["per_source"][source.name]
        assert entry["test_metrics"] == alone["test_metrics"]
        assert entry["positives"] == alone["positives"] and entry["undefined"] == alone["undefined"]
        predictor = outcome.model.source_predictor(source.name)
        single = evaluate(predictor, source, label_cutoffs, torch.device("cpu"))
        assert entry["baselines"] == single["baselines"]


def test_pooled_positives_are_the_union_of_per_source_positives(trained):
    sources, outcome, _ = trained
    report = evaluate_sources(outcome.model, sources, outcome.label_cutoffs, torch.device("cpu"))
    for dim, count in report["positives"].items():
        assert count == sum(entry["positives"][dim] for entry in report["per_source"].values())
    assert report["num_samples"] == sum(entry["num_samples"] for entry in report["per_source"].values())
    assert report["test_metrics"]["mean_auc"] is not None


def test_resumed_run_matches_an_uninterrupted_one(data_config, trained, tmp_path):
    _, first = train(data_config, tmp_path, epochs=1)
    first.fit()
    _, resumed = train(data_config, tmp_path)
    resumed.resume()
    assert resumed.start_epoch == 2
    state = resumed.fit().model.network.state_dict()
    expected = trained[1].model.network.state_dict()
    assert resumed.history["train_loss"] == pytest.approx(trained[1].history["train_loss"], rel=1e-6)
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value)


def test_script_writes_the_results_contract(data_config, tmp_path):
    spec = importlib.util.spec_from_file_location("train_multi_model", ROOT / "workflow_scripts" / "train_multi_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(
        ["--data-config", str(data_config), "--output-dir", str(tmp_path), "--epochs", "1", "--hidden-dims", "8", "--device", "cpu"]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model_name"] == tmp_path.name
    for key in ("mse", "mae", "rmse", "mse_x", "mae_gripper", "auc_y", "ap_yaw", "mean_auc", "mean_ap"):
        assert key in results["test_metrics"], key
    for entry in results["per_source"].values():
        assert {"test_metrics", "positives", "undefined", "baselines"} <= set(entry)
        assert {"logistic", "knn", "mahalanobis", "step_index", "abs_action", "planted_direction", "model_vs_logistic"} == set(
            entry["baselines"]
        )
    assert "baselines" not in results
    assert {"history", "config"} <= set(results)


def test_multi_model_needs_a_shared_layer():
    with pytest.raises(ValueError, match="hidden layer"):
        MultiRiskPredictor(["a"], [8], hidden_dims=[])


@pytest.mark.parametrize(
    "document, message",
    [
        ({"datasets": [{"model_name": "a", "data_path": "missing.vlarisk"}]}, r"datasets\[0\]\.data_path"),
        ({"datasets": []}, "'datasets' must be a non-empty list"),
        ({"datasets": [{"data_path": "DATA"}]}, r"datasets\[0\]\.model_name"),
        (
            {"datasets": [{"model_name": "a", "data_path": "DATA"}, {"model_name": "a", "data_path": "DATA"}]},
            "already used by datasets\\[0\\]",
        ),
        ({"datasets": [{"model_name": "a", "data_path": "DATA", "data-path": "x"}]}, "unknown field"),
    ],
)
def test_bad_data_configs_name_the_file_and_field(document, message, dataset_path, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document).replace("DATA", str(dataset_path)))
    with pytest.raises(InputError, match=message) as error:
        read_data_config(path)
    assert str(path) in str(error.value)


def test_malformed_json_is_an_input_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"datasets": [')
    with pytest.raises(InputError, match="not valid JSON"):
        read_data_config(path)


def test_split_path_is_used_as_given(dataset_path, tmp_path):
    dataset = load_dataset(dataset_path)
    ids = sorted(r["rollout_id"] for r in dataset.metadata["rollouts"])
    split = {"train": ids[::3], "val": ids[1::3], "test": ids[2::3]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    (tmp_path / "config.json").write_text(
        json.dumps({"datasets": [{"model_name": "a", "data_path": str(dataset_path), "split_path": str(tmp_path / "split.json")}]})
    )
    (source,) = load_sources(tmp_path / "config.json")
    assert source.split == split


def project_with_groups(tmp_path, groups) -> tuple[Path, tuple[str, ...]]:
    """A project copy whose config is the tiny one plus ``multi_model.groups``."""
    workdir = copy_project(tmp_path)
    config = yaml.safe_load((workdir / "tests/data/tiny_config.yaml").read_text())
    (workdir / "multi.yaml").write_text(yaml.safe_dump({**config, "multi_model": {"groups": groups}}))
    return workdir, ("--configfile", "multi.yaml", "--replace-workflow-config")


@pytest.mark.slow
def test_pipeline_plans_one_training_and_evaluation_per_group(tmp_path):
    workdir, args = project_with_groups(tmp_path, {"pair": ["tiny_a", "tiny_b"]})
    jobs = planned_jobs(workdir, *args)
    assert jobs["write_multi_config"] == jobs["train_multi_model"] == jobs["evaluate_multi_model"] == 1


@pytest.mark.parametrize(
    "members, message",
    [
        (["tiny_a", "nope"], "multi_model.groups.pair names unknown source"),
        (["tiny_a", 3], "multi_model.groups.pair: ['tiny_a', 3] is not one of all"),
    ],
)
@pytest.mark.slow
def test_bad_groups_fail_at_parse_time(tmp_path, members, message):
    workdir, args = project_with_groups(tmp_path, {"pair": members})
    result = snakemake(workdir, "-n", *args)
    assert result.returncode != 0 and message in result.stdout + result.stderr
