"""Baselines fitted once per source and split: scoring with the file gives the very results.json that
fitting them in the scoring gives, and a file computed on anything else is refused."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch

from vlarisk.commands import evaluate, score_baselines, split, train
from vlarisk.core.errors import InputError
from vlarisk.data.dataset import load_dataset
from vlarisk.data.documents import read_checkpoint
from vlarisk.data.prepare import prepare_dataset
from vlarisk.model.checkpoints import predictor_from_checkpoint
from vlarisk.score.attribution import COLLECTION_FILE
from vlarisk.score.detection_flags import DetectionOptions
from vlarisk.score.evaluation import multi_source_report, score_source
from vlarisk.score.source_baselines import checked_baselines_by_source, fit_source_baselines, write_source_baselines
from vlarisk.train.sources import open_source

CPU = torch.device("cpu")
RUN_FIELDS = ("evaluation_seconds",)  # provenance that differs between any two runs


@pytest.fixture(scope="module")
def collected(rollout_files, tmp_path_factory):
    """The tiny synthetic rollouts as a collected physics source (a ``collection.json`` of single-axis
    perception biases beside them), prepared, split twice and a one-epoch model trained on split 0."""
    root = tmp_path_factory.mktemp("collected")
    success, failure = root / "success_rollouts.pkl", root / "failure_rollouts.pkl"
    shutil.copy(rollout_files[0], success)
    shutil.copy(rollout_files[1], failure)
    failures = [
        {
            "index": i,
            "perturbation": {"kind": "perception_bias", "axis": "xyz"[i % 3]},
            "t_star": 30,
            "blame": [1, 0, 0, None, None, None, 0],
        }
        for i in range(40)
    ]
    (root / COLLECTION_FILE).write_text(json.dumps({"failures": failures, "absent_dimensions": ["roll", "pitch", "yaw"]}))
    data = root / "dataset.vlarisk"
    prepare_dataset(success, failure, data)
    for seed in (0, 1):
        split.main(["--data", str(data), "--output", str(root / f"split-{seed}.json"), "--seed", str(seed)])
    train.main(
        ["--data", str(data), "--split", str(root / "split-0.json"), "--output-dir", str(root / "model"), "--epochs", "1", "--no-test"]
    )
    return root, rollout_files[2]


def score(root, planting, output, *extra) -> dict:
    """results.json of the trained model scored on split 0 (``extra``: more flags)."""
    flags = ["--checkpoint", root / "model/best_model.pt", "--data", root / "dataset.vlarisk", "--split", root / "split-0.json"]
    evaluate.main([str(flag) for flag in [*flags, "--planting", planting, "--output", output, "--device", "cpu", *extra]])
    results = json.loads(output.read_text())
    for field in RUN_FIELDS:
        del results["provenance"][field]
    return results


def fit_file(root, planting, output, split_seed: int = 0, *extra) -> str:
    flags = ["--source", "tiny", "--data", root / "dataset.vlarisk", "--split", root / f"split-{split_seed}.json", "--planting", planting]
    score_baselines.main([str(flag) for flag in [*flags, "--output", output, *extra]])
    return str(output)


def test_scoring_with_the_file_writes_the_same_results(collected, tmp_path):
    root, planting = collected
    fitted_here = score(root, planting, tmp_path / "fitted.json")
    assert {"attribution", "baselines", "detection"} <= set(fitted_here)
    assert {"planted_direction", "knn", "mahalanobis", "logistic"} <= set(fitted_here["baselines"])
    baselines = fit_file(root, planting, tmp_path / "baselines.json")
    assert score(root, planting, tmp_path / "read.json", "--baselines", baselines) == fitted_here


@pytest.mark.parametrize(
    ("split_seed", "flags", "field"),
    [
        (1, [], "split_sha256"),
        (0, ["--n-boot", "50"], "detection_options"),
        (0, ["--positive-fraction-of-max", "0.4"], "label_cutoffs"),
    ],
)
def test_a_file_of_another_split_cutoff_or_option_is_refused(collected, tmp_path, split_seed, flags, field):
    root, planting = collected
    baselines = fit_file(root, planting, tmp_path / "baselines.json", split_seed, *flags)
    with pytest.raises(InputError, match=rf"^{baselines}: baselines computed with another {field} ") as refused:
        score(root, planting, tmp_path / "results.json", "--baselines", baselines)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "results.json").exists()


def test_a_file_of_another_dataset_is_refused(collected, unlabelled_rollout_files, tmp_path):
    root, planting = collected
    other = tmp_path / "other"
    prepare_dataset(*unlabelled_rollout_files[:2], other / "dataset.vlarisk")
    split.main(["--data", str(other / "dataset.vlarisk"), "--output", str(other / "split-0.json")])
    baselines = fit_file(other, planting, tmp_path / "baselines.json")
    with pytest.raises(InputError, match="baselines computed with another dataset_sha256 "):
        score(root, planting, tmp_path / "results.json", "--baselines", baselines)


def test_a_multi_source_block_reads_its_sources_file(collected, tmp_path):
    """multi_source_report with a source's fitted baselines equals fitting them in the report."""
    root, planting = collected
    source = open_source("tiny", str(root / "dataset.vlarisk"), str(root / "split-0.json"), str(planting))
    predictor = predictor_from_checkpoint(read_checkpoint(root / "model/best_model.pt"), "model")
    cutoffs = source.label_cutoffs(0.5)
    scored = [score_source(predictor, source, cutoffs, CPU)]
    options = DetectionOptions()
    path = tmp_path / "baselines.json"
    write_source_baselines(path, fit_source_baselines(source, "test", cutoffs, options))
    read = checked_baselines_by_source([str(path)], [source], {"tiny": cutoffs}, options)
    with_file, fitted_here = (multi_source_report(scored, CPU, time.perf_counter(), options, baselines=b) for b in (read, None))
    assert json.dumps(with_file["per_source"], sort_keys=True) == json.dumps(fitted_here["per_source"], sort_keys=True)
    with pytest.raises(InputError, match="baselines of source 'tiny', which is none of the scored sources"):
        checked_baselines_by_source([str(path)], [], {}, options)


def test_scores_are_kept_exactly(collected, tmp_path):
    root, planting = collected
    source = open_source("tiny", str(root / "dataset.vlarisk"), str(root / "split-0.json"), str(planting))
    fitted = fit_source_baselines(source, "test", source.label_cutoffs(0.5), DetectionOptions())
    write_source_baselines(tmp_path / "b.json", fitted)
    read = checked_baselines_by_source([str(tmp_path / "b.json")], [source], {"tiny": source.label_cutoffs(0.5)}, DetectionOptions())[
        "tiny"
    ]
    assert read.scores.keys() == fitted.scores.keys()
    for name, values in fitted.scores.items():
        assert read.scores[name].dtype == values.dtype
        np.testing.assert_array_equal(read.scores[name], values)
    assert len(load_dataset(root / "dataset.vlarisk").rollout_id) > read.n_scored > 0
