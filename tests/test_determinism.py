"""Same inputs, config and seed give identical results on CPU: datasets byte for byte, metrics exactly.

(On a GPU they agree only within a tolerance: see docs/robustness.md.)
"""

from __future__ import annotations

import hashlib
import re

import torch

from vlarisk.core.settings import TrainingConfig
from vlarisk.data.dataset import load_dataset
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.splits import plain_split
from vlarisk.score.evaluation import evaluate
from vlarisk.train.sources import Source
from vlarisk.train.training import Trainer

TIMING = re.compile(r"(seconds|per_second)")


def stable(obj):
    """Without what measures the run (wall times, throughput) rather than the model."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if not TIMING.search(k)}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def _train(dataset, split, directory, seed=0):
    config = TrainingConfig(epochs=3, batch_size=64, hidden_dims=[32, 16], dropout=0.2, seed=seed, device="cpu")
    source = Source("m", dataset, split)
    outcome = Trainer([source], config, directory, "m", log=lambda _: None).fit()
    return outcome, evaluate(outcome.model, source, outcome.label_cutoffs["m"], torch.device("cpu"))


def test_same_config_and_seed_give_identical_metrics_twice(dataset_path, tmp_path):
    dataset = load_dataset(dataset_path)
    split = plain_split(dataset.metadata["rollouts"], 0.2, 0.2, seed=0)
    assert split == plain_split(dataset.metadata["rollouts"], 0.2, 0.2, seed=0)
    (first, report_1), (second, report_2) = _train(dataset, split, tmp_path / "a"), _train(dataset, split, tmp_path / "b")
    assert report_1["test_metrics"] == report_2["test_metrics"]  # exact, not approximate
    assert report_1["prediction_std"] == report_2["prediction_std"]
    assert stable(first.history) == stable(second.history)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    _, report_3 = _train(dataset, split, tmp_path / "c", seed=1)
    assert report_3["test_metrics"] != report_1["test_metrics"], "the seed must matter"


def test_preparing_twice_gives_the_same_bytes(rollout_files, tmp_path):
    digests = set()
    for name in ("a.vlarisk", "b.vlarisk"):
        prepare_dataset(rollout_files[0], rollout_files[1], tmp_path / name)
        digests.add(hashlib.sha256(b"".join(f.read_bytes() for f in sorted((tmp_path / name).iterdir()))).hexdigest())
    assert len(digests) == 1
