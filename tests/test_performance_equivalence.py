"""The optimised data paths give bit-for-bit the results of straightforward implementations.

Each optimisation (batches gathered into reused buffers and normalised in place, statistics in
small blocks, scoring from one reused buffer, vectorised checks and a background writer in
preparation) is compared here with the plain code it replaced, written out in the test, so a
speed-up can never silently change a metric. These comparisons use data stored one state per
step (``deduplicate=False``), where training on distinct states must give exactly the per-step
batches; ``test_chunks.py`` compares chunked training with per-step training. Training is also
run twice to show it is deterministic for a fixed seed.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlarisk.core.settings import TrainingConfig
from vlarisk.data import rollouts as rollouts_module
from vlarisk.data.dataset import load_dataset
from vlarisk.data.label_cutoffs import positive_label_cutoffs
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.splits import plain_split, split_rows
from vlarisk.model.inference import gather_rows, predict_rows
from vlarisk.model.models import RiskPredictor
from vlarisk.train.batches import BatchStream
from vlarisk.train.normalization import MIN_STD, feature_statistics
from vlarisk.train.sources import Source
from vlarisk.train.training import Trainer, validation_metrics

SEED = 7


def plain_statistics(hidden: np.ndarray, rows: np.ndarray, chunk_rows: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """The documented computation: float64 sums of each chunk of rows at once, E[x^2] - E[x]^2."""
    total = np.zeros(hidden.shape[1])
    total_sq = np.zeros(hidden.shape[1])
    for start in range(0, len(rows), chunk_rows):
        block = np.asarray(hidden[rows[start : start + chunk_rows]], dtype=np.float64)
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    mean = total / len(rows)
    std = np.sqrt(np.maximum(total_sq / len(rows) - np.square(mean), 0.0))
    std[std < MIN_STD] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def plain_training(dataset, split: dict, config: TrainingConfig) -> dict:
    """Trainer.fit's recipe written out plainly: fresh tensors per batch, no reused buffers."""
    rows = split_rows(dataset.rollout_id, split)
    mean, std = (torch.from_numpy(s) for s in plain_statistics(dataset.hidden, rows["train"]))
    label_cutoffs = positive_label_cutoffs(dataset.labels[rows["train"]], config.positive_fraction_of_max)
    torch.manual_seed(config.seed)
    model = RiskPredictor(dataset.hidden_dim, config.hidden_dims, dropout=config.dropout, activation=config.activation)
    prior = np.clip(np.asarray(dataset.labels[rows["train"]], dtype=np.float64).mean(axis=0), 1e-4, 1 - 1e-4)
    with torch.no_grad():  # outputs start at the training label prior
        model.mlp[-1].weight.mul_(0.1)
        model.mlp[-1].bias.copy_(torch.from_numpy(np.log(prior / (1 - prior))).float())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)  # as on any CPU
    labels = torch.from_numpy(np.array(dataset.labels, dtype=np.float32))
    history = {"train_loss": [], "val_metrics": []}
    train = rows["train"]
    for epoch in range(1, config.epochs + 1):
        torch.manual_seed(config.seed * 100_003 + epoch)
        model.train()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train))
        total = torch.zeros(())
        for start in range(0, len(order), config.batch_size):
            picked = train[np.sort(order[start : start + config.batch_size])]
            hidden = (torch.from_numpy(np.array(dataset.hidden[picked])) - mean) / std
            target = labels[torch.from_numpy(picked)]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                loss = F.binary_cross_entropy_with_logits(model.mlp(hidden).float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
            optimizer.step()
            total += loss.detach() * len(target)
        history["train_loss"].append(float(total) / len(train))
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            val = (torch.from_numpy(np.array(dataset.hidden[rows["val"]])) - mean) / std
            prediction = model(val).float().numpy()
        history["val_metrics"].append(
            validation_metrics(prediction, np.asarray(dataset.labels[rows["val"]]), label_cutoffs, config.loss_type)
        )
    return {"history": history, "state": model.state_dict()}


@pytest.fixture(scope="module")
def tiny(rollout_files, tmp_path_factory):
    """The tiny source stored one state per step (no repeats), and a split."""
    path = tmp_path_factory.mktemp("per_step") / "tiny.vlarisk"
    prepare_dataset(rollout_files[0], rollout_files[1], path, deduplicate=False)
    dataset = load_dataset(path)
    assert len(dataset.states) == len(dataset)
    return dataset, plain_split(dataset.metadata["rollouts"], 0.2, 0.1, seed=0)


@pytest.fixture(scope="module")
def chunked(dataset_path):
    """The tiny source with its action chunks' repeated states stored once."""
    dataset = load_dataset(dataset_path)
    assert len(dataset.states) < len(dataset)
    return dataset, plain_split(dataset.metadata["rollouts"], 0.2, 0.1, seed=0)


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("batch_size", [64, 50])  # 50: the last batch of an epoch is partial
def test_trainer_matches_plain_training_exactly(tiny, tmp_path, batch_size, bf16):
    dataset, split = tiny
    config = TrainingConfig(epochs=3, batch_size=batch_size, hidden_dims=[32, 16], device="cpu", seed=SEED, bf16=bf16)
    outcome = Trainer([Source("tiny", dataset, split)], config, tmp_path, "tiny", log=lambda _: None).fit()
    expected = plain_training(dataset, split, config)
    assert outcome.history["train_loss"] == expected["history"]["train_loss"]
    assert outcome.history["val_metrics"] == expected["history"]["val_metrics"]
    # fit() returns the best epoch's weights; compare them when the best epoch is the last one
    if outcome.best_epoch == config.epochs:
        for name, tensor in expected["state"].items():
            assert torch.equal(outcome.model.predictor.state_dict()[name], tensor), name


def test_training_is_deterministic(tiny, tmp_path):
    dataset, split = tiny
    config = TrainingConfig(epochs=2, batch_size=32, hidden_dims=[16], device="cpu", seed=SEED)
    runs = [Trainer([Source("tiny", dataset, split)], config, tmp_path / str(i), "tiny", log=lambda _: None).fit() for i in range(2)]
    assert runs[0].history["train_loss"] == runs[1].history["train_loss"]
    assert runs[0].history["val_metrics"] == runs[1].history["val_metrics"]
    for name, tensor in runs[0].model.state_dict().items():
        assert torch.equal(runs[1].model.state_dict()[name], tensor)


def test_batch_stream_yields_the_plain_batches(tiny):
    dataset, split = tiny
    train = split_rows(dataset.rollout_id, split)["train"]
    mean, std = (torch.from_numpy(s) for s in feature_statistics(dataset.hidden, train))
    stream = BatchStream(dataset, train, mean, std, torch.device("cpu"), 48)
    order = np.random.default_rng([SEED, 4]).permutation(len(train))
    starts = list(range(0, len(train), 48))
    for start, (hidden, target, inverse) in zip(starts, stream.epoch(SEED, 4), strict=True):
        assert inverse is None
        picked = train[np.sort(order[start : start + 48])]
        torch.testing.assert_close(hidden, (torch.from_numpy(np.array(dataset.hidden[picked])) - mean) / std, rtol=0, atol=0)
        torch.testing.assert_close(target, torch.from_numpy(np.array(dataset.labels[picked])), rtol=0, atol=0)


@pytest.mark.parametrize("chunk_rows, block_rows", [(16384, 1024), (100, 7), (100, 100), (64, 1000)])
def test_statistics_do_not_depend_on_the_block_size(chunk_rows, block_rows):
    rng = np.random.default_rng(0)
    hidden = (rng.standard_normal((700, 24)) * rng.exponential(3.0, (1, 24)) + 5).astype(np.float32)
    hidden[:, 3] = 2.5  # constant feature: std 1
    for rows in (np.arange(700), np.sort(rng.choice(700, 450, replace=False)), np.array([11])):
        mean, std = feature_statistics(hidden, rows, chunk_rows=chunk_rows, block_rows=block_rows)
        expected_mean, expected_std = plain_statistics(hidden, rows, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(mean, expected_mean)
        np.testing.assert_array_equal(std, expected_std)


def test_scoring_matches_plain_scoring(tiny):
    dataset, split = tiny
    rows = split_rows(dataset.rollout_id, split)
    mean, std = (torch.from_numpy(s) for s in feature_statistics(dataset.hidden, rows["train"]))
    torch.manual_seed(0)
    model = RiskPredictor(dataset.hidden_dim, [32]).train()
    for batch_rows in (16384, 33):
        prediction = predict_rows(model, dataset.hidden, rows["test"], mean, std, torch.device("cpu"), batch_rows=batch_rows)
        assert model.training  # the mode is restored
        model.eval()
        with torch.no_grad():
            expected = torch.cat(
                [
                    model((torch.from_numpy(np.array(dataset.hidden[rows["test"][s : s + batch_rows]])) - mean) / std)
                    for s in range(0, len(rows["test"]), batch_rows)
                ]
            ).numpy()
        model.train()
        np.testing.assert_array_equal(prediction, expected)
    assert predict_rows(model, dataset.hidden, np.array([], dtype=np.int64), mean, std, torch.device("cpu")).shape == (0, 7)


def test_gather_rows_handles_runs_and_scattered_rows():
    hidden = np.arange(60, dtype=np.float32).reshape(20, 3)
    out = np.empty((8, 3), dtype=np.float32)
    for rows in (np.arange(4, 12), np.array([0, 5, 6, 19]), np.array([3]), np.array([2, 3, 9])):
        np.testing.assert_array_equal(gather_rows(hidden, rows, out), hidden[rows])


def _rollout_pickles(tmp_path, dtype, nan_step: bool):
    """Small labelled rollouts (dict layout) with float32 or float64 hidden states."""
    rng = np.random.default_rng(3)
    files = []
    for success, count in ((True, 4), (False, 5)):
        rollouts = []
        for r in range(count):
            steps = []
            for t in range(12 + r):
                hidden = rng.standard_normal(20).astype(dtype)
                if nan_step and not success and r == 1 and t == 3:
                    hidden[5] = np.nan
                if r == 2 and t == 0:
                    hidden = np.zeros(1, dtype=dtype)  # a failed hook
                label = None if r == 3 and t % 2 else rng.random(7).tolist()  # rollout 3 half unlabelled
                step = {"action": rng.uniform(-1, 1, 7).astype(np.float32), "hidden_state": hidden}
                if label is not None:
                    step["labels"] = {"per_dim_risk": label}
                steps.append(step)
            rollouts.append({"steps": steps, "success": success, "task_id": r % 2})
        path = tmp_path / f"{'success' if success else 'failure'}_{np.dtype(dtype).name}.pkl"
        path.write_bytes(pickle.dumps({"trajectories": rollouts, "metadata": {}}))
        files.append(path)
    return files


@pytest.mark.parametrize("labelling", ["auto", "require"])
def test_preparation_fast_paths_match_the_step_by_step_checks(tmp_path, monkeypatch, labelling):
    # float32 states take the vectorised path; the same values as float64 take the per-step path
    fast = prepare_dataset(*_rollout_pickles(tmp_path, np.float32, nan_step=True), tmp_path / "fast.vlarisk", labelling=labelling)
    monkeypatch.setattr(rollouts_module, "_checked_labels_fast", lambda labels: None)
    slow = prepare_dataset(*_rollout_pickles(tmp_path, np.float64, nan_step=True), tmp_path / "slow.vlarisk", labelling=labelling)
    for key in (
        "num_with_labels",
        "num_without_labels",
        "skipped_nonfinite_hidden",
        "skipped_wrong_hidden_length",
        "skipped_unlabelled_dropped",
        "rollouts",
    ):
        assert fast[key] == slow[key], key
    assert fast["skipped_nonfinite_hidden"] == 1
    a, b = load_dataset(tmp_path / "fast.vlarisk"), load_dataset(tmp_path / "slow.vlarisk")
    assert a.content_hash == b.content_hash
    np.testing.assert_array_equal(a.hidden, b.hidden)
    for name in a.arrays:
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name])


def test_device_resident_batches_match_the_host_batches(chunked, monkeypatch):
    """The GPU path's logic (rows normalised once into one tensor, batches indexed from it), run on CPU."""
    dataset, split = chunked
    train = split_rows(dataset.rollout_id, split)["train"]
    mean, std = (torch.from_numpy(s) for s in feature_statistics(dataset.hidden, train))
    host = BatchStream(dataset, train, mean, std, torch.device("cpu"), 40)
    expected = [(hidden.clone(), target, inverse) for hidden, target, inverse in host.epoch(SEED, 2)]
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 40, 1 << 40))
    resident = BatchStream(dataset, train, mean, std, torch.device("cpu"), 40)
    resident.resident = resident._copy_to_device()
    batches = list(resident.epoch(SEED, 2))
    assert len(batches) == len(expected)
    assert any(inverse is not None for _, _, inverse in expected)
    for (hidden, target, inverse), (want_hidden, want_target, want_inverse) in zip(batches, expected, strict=True):
        assert torch.equal(hidden, want_hidden) and torch.equal(target, want_target)
        assert (inverse is None and want_inverse is None) or torch.equal(inverse, want_inverse)


def test_dataset_hash_covers_the_bytes_in_order(dataset_path, tmp_path):
    """The digest (distinct states hashed back from the file on a thread, then the state index and
    the step arrays) is the sha256 of the arrays' bytes in that order, as a one-pass hash gives."""
    import hashlib

    from vlarisk.data.dataset import STEP_FIELDS, DatasetWriter

    dataset = load_dataset(dataset_path)
    expected = hashlib.sha256(np.ascontiguousarray(dataset.states).tobytes())
    expected.update(np.ascontiguousarray(dataset.state_index, dtype=np.int32).tobytes())
    for name in STEP_FIELDS:
        expected.update(np.ascontiguousarray(dataset.arrays[name]).tobytes())
    assert dataset.content_hash == expected.hexdigest()
    # the arrays are plain .npy files
    np.testing.assert_array_equal(np.load(dataset_path / "states.npy", mmap_mode="r"), dataset.states)
    # many small blocks and several flushes: same digest
    import vlarisk.data.dataset as dataset_module

    original = dataset_module._Flusher.__init__

    def small(self, handle, path, digest, start, every=4096, chunk=1000):
        original(self, handle, path, digest, start, every=every, chunk=chunk)

    dataset_module._Flusher.__init__ = small
    try:
        with DatasetWriter(tmp_path / "copy.vlarisk") as writer:
            for start in range(0, len(dataset.states), 7):
                writer.append_hidden(np.array(dataset.states[start : start + 7]))
            arrays = {name: np.array(dataset.arrays[name]) for name in STEP_FIELDS}
            writer.finish({**arrays, "state_index": np.array(dataset.state_index)}, {})
    finally:
        dataset_module._Flusher.__init__ = original
    assert load_dataset(tmp_path / "copy.vlarisk").content_hash == expected.hexdigest()
