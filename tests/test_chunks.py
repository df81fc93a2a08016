"""Training once per action chunk: repeated hidden states are stored, trained on and scored once,
and the results are those of per-step training.

Every expected value comes from per-step code written out here (each step its own copy of its
hidden state), never from the chunked code under test.
"""

from __future__ import annotations

import copy
import hashlib
import pickle

import numpy as np
import pytest
import torch

from vlarisk.core.settings import TrainingConfig
from vlarisk.data.dataset import StepStates, load_dataset
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.splits import plain_split, split_rows
from vlarisk.data.synthetic import SimulationSpec, write_synthetic_source
from vlarisk.model.inference import predict_rows
from vlarisk.model.models import MultiRiskPredictor, RiskPredictor
from vlarisk.train.batches import BatchStream
from vlarisk.train.normalization import feature_statistics
from vlarisk.train.sources import Source
from vlarisk.train.training import HUBER_DELTA, Trainer, training_loss

SEED = 3
LOSSES = ("bce", "mse", "mae", "huber")


def per_step_loss(prediction_logits: torch.Tensor, target: torch.Tensor, loss_type: str) -> torch.Tensor:
    """The per-step objective written out: mean over steps and dimensions."""
    if loss_type == "bce":
        p = torch.sigmoid(prediction_logits.double())
        t = target.double()
        return -(t * torch.log(p) + (1 - t) * torch.log1p(-p)).mean()
    error = (torch.sigmoid(prediction_logits.double()) - target.double()).abs()
    if loss_type == "mse":
        return error.square().mean()
    if loss_type == "mae":
        return error.mean()
    return torch.where(error < HUBER_DELTA, 0.5 * error.square(), HUBER_DELTA * (error - 0.5 * HUBER_DELTA)).mean()


# ------------------------------------------------------------------------------------ preparation
def _write_rollouts(tmp_path, success_states: list[list[np.ndarray]], failure_states: list[list[np.ndarray]]):
    rng = np.random.default_rng(0)
    paths = []
    for name, rollouts, success in (("s.pkl", success_states, True), ("f.pkl", failure_states, False)):
        payload = [
            {
                "steps": [
                    {
                        "action": rng.uniform(-1, 1, 7).astype(np.float32),
                        "hidden_state": state,
                        "labels": {"per_dim_risk": rng.random(7).tolist()},
                    }
                    for state in states
                ],
                "success": success,
                "task_id": 0,
            }
            for states in rollouts
        ]
        (tmp_path / name).write_bytes(pickle.dumps(payload))
        paths.append(tmp_path / name)
    return paths


def test_repeats_are_found_by_content_not_identity(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(200).astype(np.float32), rng.standard_normal(200).astype(np.float32)
    nearly_a = a.copy()
    nearly_a[7] = np.nextafter(nearly_a[7], np.float32(np.inf))  # one element differs in its last bit
    # equal copies (distinct objects), a non-adjacent repeat, and a one-element difference
    success = [[a.copy(), a.copy(), b.copy(), a.copy(), nearly_a, nearly_a.copy()]]
    failure = [[b.copy(), b.copy(), a.copy()]]  # the same content in another rollout is stored again
    s, f = _write_rollouts(tmp_path, success, failure)
    prepare_dataset(s, f, tmp_path / "d.vlarisk")
    dataset = load_dataset(tmp_path / "d.vlarisk")
    # reference: distinct byte strings per rollout, numbered in order of first appearance
    expected_states, expected_index = [], []
    for states in success + failure:
        seen: dict[bytes, int] = {}
        for state in states:
            key = state.tobytes()
            if key not in seen:
                seen[key] = len(expected_states)
                expected_states.append(state)
            expected_index.append(seen[key])
    np.testing.assert_array_equal(dataset.states, np.stack(expected_states))
    np.testing.assert_array_equal(dataset.state_index, expected_index)
    assert len(dataset.states) == 5 and dataset.metadata["num_states"] == 5
    np.testing.assert_array_equal(np.asarray(dataset.hidden), np.stack([x for r in success + failure for x in r]))
    assert len(dataset.labels) == 9  # labels stay per step


@pytest.fixture(scope="module")
def no_repeat_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunk1")
    paths = (root / "s.pkl", root / "f.pkl", root / "p.npz")
    write_synthetic_source(
        SimulationSpec(hidden_dim=16, num_success=10, num_failure=12, success_steps=(20, 30), failure_steps=30, num_tasks=2, chunk_size=1),
        *paths,
    )
    return paths


def test_data_without_repeats_is_stored_unchanged(no_repeat_files, tmp_path):
    prepare_dataset(no_repeat_files[0], no_repeat_files[1], tmp_path / "dedup.vlarisk")
    prepare_dataset(no_repeat_files[0], no_repeat_files[1], tmp_path / "plain.vlarisk", deduplicate=False)
    dedup, plain = load_dataset(tmp_path / "dedup.vlarisk"), load_dataset(tmp_path / "plain.vlarisk")
    np.testing.assert_array_equal(dedup.state_index, np.arange(len(dedup)))
    np.testing.assert_array_equal(dedup.states, plain.states)
    assert dedup.content_hash == plain.content_hash
    # the reference: every step's hidden state from the pickles, in file order
    rollouts = [r for path in no_repeat_files[:2] for r in pickle.loads(path.read_bytes())["trajectories"]]
    raw = np.stack([np.asarray(step["hidden_state"], dtype=np.float32) for r in rollouts for step in r["steps"]])
    np.testing.assert_array_equal(dedup.states, raw)


# ------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def pair(rollout_files, dataset_path, tmp_path_factory):
    """The tiny chunked source stored deduplicated and per step, and one split."""
    per_step_path = tmp_path_factory.mktemp("pair") / "per_step.vlarisk"
    prepare_dataset(rollout_files[0], rollout_files[1], per_step_path, deduplicate=False)
    chunked, per_step = load_dataset(dataset_path), load_dataset(per_step_path)
    assert len(chunked.states) * 4 < len(chunked) == len(per_step) == len(per_step.states)
    return chunked, per_step, plain_split(chunked.metadata["rollouts"], 0.2, 0.1, seed=0)


@pytest.mark.parametrize("loss_type", LOSSES)
def test_chunk_loss_equals_the_per_step_loss(loss_type):
    torch.manual_seed(0)
    model = RiskPredictor(10, [8], dropout=0.0)
    states = torch.randn(5, 10)
    inverse = torch.tensor([0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4])
    target = torch.rand(len(inverse), 7)
    target[3:6] = 0.0  # some hard zeros, as most real labels are
    chunked = training_loss(model, states, target, loss_type, inverse)
    expected = per_step_loss(model.logits(states[inverse]), target, loss_type)
    torch.testing.assert_close(chunked.double(), expected, rtol=1e-5, atol=1e-7)  # float32 against a float64 reference
    # and the gradients
    grads = torch.autograd.grad(chunked, list(model.parameters()))
    want = torch.autograd.grad(per_step_loss(model.logits(states[inverse]), target, loss_type), list(model.parameters()))
    for got, ref in zip(grads, want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("loss_type", LOSSES)
def test_a_full_batch_gives_the_per_step_update(pair, tmp_path, loss_type):
    chunked, _, split = pair
    config = TrainingConfig(epochs=1, batch_size=100_000, hidden_dims=[32, 16], dropout=0.0, device="cpu", seed=SEED, loss_type=loss_type)
    trainer = Trainer([Source("tiny", chunked, split)], config, tmp_path, "tiny", log=lambda _: None)
    reference = copy.deepcopy(trainer.model)
    part = trainer.parts[0]
    loss = trainer._train_epoch(trainer.batches(), 1)
    # the reference step: every training step its own row, one batch, the same recipe
    train = part.rows["train"]
    hidden = (torch.from_numpy(np.stack([np.array(chunked.states[chunked.state_index[r]]) for r in train])) - part.mean) / part.std
    target = torch.from_numpy(np.array(chunked.labels[train]))
    optimizer = torch.optim.Adam(reference.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    expected = per_step_loss(reference.logits(hidden), target, loss_type)
    expected.backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), config.grad_clip)
    optimizer.step()
    assert loss == pytest.approx(float(expected.detach()), rel=1e-5)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], tensor, rtol=0, atol=2e-6, msg=name)


def test_batches_hold_whole_chunks_and_every_step_once(pair):
    chunked, _, split = pair
    train = split_rows(chunked.rollout_id, split)["train"]
    mean, std = torch.zeros(chunked.hidden_dim), torch.ones(chunked.hidden_dim)
    stream = BatchStream(chunked, train, mean, std, torch.device("cpu"), 20)
    states_of_train = chunked.state_index[train]
    max_chunk = np.bincount(states_of_train).max()
    plan = stream.plan(SEED, 1)
    seen = []
    for b, (hidden, target, inverse) in enumerate(stream.epoch(SEED, 1)):
        assert len(hidden) <= 20 and len(target) < 20 + max_chunk
        inverse = np.arange(len(hidden)) if inverse is None else inverse.numpy()
        steps = train[plan.steps[plan.step_bounds[b] : plan.step_bounds[b + 1]]]
        # every step's target is paired with that step's own hidden state
        np.testing.assert_array_equal(hidden.numpy()[inverse], np.stack([chunked.states[chunked.state_index[r]] for r in steps]))
        np.testing.assert_array_equal(target.numpy(), np.asarray(chunked.labels[steps]))
        assert len(np.unique(chunked.state_index[steps])) == len(hidden)  # each state once
        seen.append(len(target))
    assert sum(seen) == len(train)
    assert sorted(plan.steps.tolist()) == list(range(len(train)))  # every training step exactly once
    for b in range(len(plan)):
        batch_states = set(states_of_train[plan.steps[plan.step_bounds[b] : plan.step_bounds[b + 1]]].tolist())
        outside = np.concatenate([plan.steps[: plan.step_bounds[b]], plan.steps[plan.step_bounds[b + 1] :]])
        assert not batch_states & set(states_of_train[outside].tolist())  # no chunk split between batches
    assert np.mean(seen[:-1]) == pytest.approx(20, abs=float(max_chunk))


def test_statistics_stay_the_per_step_statistics(pair):
    chunked, _, split = pair
    train = split_rows(chunked.rollout_id, split)["train"]
    mean, std = feature_statistics(chunked.hidden, train, chunk_rows=7, block_rows=3)
    steps = np.stack([np.asarray(chunked.states[chunked.state_index[r]], dtype=np.float64) for r in train])
    np.testing.assert_allclose(mean, steps.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std, steps.std(axis=0), rtol=1e-6, atol=1e-6)


def test_predictions_run_once_per_state_and_reach_every_step(pair):
    chunked, _, split = pair
    rows = split_rows(chunked.rollout_id, split)["test"]
    torch.manual_seed(0)
    model = RiskPredictor(chunked.hidden_dim, [8]).eval()
    scored = []
    model.register_forward_hook(lambda module, inputs, output: scored.append(len(inputs[0])))
    mean, std = torch.zeros(chunked.hidden_dim), torch.ones(chunked.hidden_dim)
    prediction = predict_rows(model, chunked.hidden, rows, mean, std, torch.device("cpu"))
    assert sum(scored) == len(np.unique(chunked.state_index[rows])) < len(rows)
    with torch.no_grad():
        expected = model(torch.from_numpy(np.stack([np.array(chunked.states[chunked.state_index[r]]) for r in rows]))).numpy()
    np.testing.assert_allclose(prediction, expected, rtol=1e-6, atol=1e-6)


def test_step_view_indexes_like_an_array():
    states = np.arange(12, dtype=np.float32).reshape(4, 3)
    index = np.array([0, 0, 1, 3, 3, 2])
    view = StepStates(states, index)
    full = states[index]
    assert view.shape == full.shape and len(view) == 6
    np.testing.assert_array_equal(view[2], full[2])
    np.testing.assert_array_equal(view[1:5], full[1:5])
    np.testing.assert_array_equal(view[np.array([5, 0, 3])], full[[5, 0, 3]])
    np.testing.assert_array_equal(view[np.array([1, 4]), 2], full[[1, 4], 2])
    np.testing.assert_array_equal(np.asarray(view), full)


def test_auc_is_unchanged_within_seed_noise(pair, tmp_path):
    chunked, per_step, split = pair
    aucs = {"chunked": [], "per_step": []}
    for seed in range(3):
        for name, dataset in (("chunked", chunked), ("per_step", per_step)):
            config = TrainingConfig(epochs=4, batch_size=64, hidden_dims=[32], device="cpu", seed=seed)
            outcome = Trainer([Source("tiny", dataset, split)], config, tmp_path / f"{name}{seed}", "tiny", log=lambda _: None).fit()
            aucs[name].append(outcome.history["val_metrics"][-1]["mean_auc"])
    chunk_mean, step_mean = np.mean(aucs["chunked"]), np.mean(aucs["per_step"])
    noise = max(np.std(aucs["chunked"]), np.std(aucs["per_step"]), 0.01)
    assert step_mean > 0.6, aucs  # the per-step reference learns
    assert abs(chunk_mean - step_mean) <= 3 * noise, aucs


def test_dataset_bytes_shrink_with_the_chunk(pair, dataset_path):
    chunked, per_step, _ = pair
    assert chunked.states.nbytes * 4 < per_step.states.nbytes
    assert hashlib.sha256(np.asarray(chunked.hidden).tobytes()).digest() == hashlib.sha256(np.asarray(per_step.hidden).tobytes()).digest()


@pytest.mark.parametrize("loss_type", LOSSES)
def test_with_dropout_the_network_runs_once_per_state_and_its_steps_share_the_mask(loss_type):
    """With dropout the loss is the per-step loss of each state's one (masked) prediction broadcast to
    its steps: the per-step objective in expectation over masks, at one forward row per state."""
    states, inverse = torch.randn(3, 16), torch.tensor([0, 0, 0, 1, 2, 2])
    target = torch.rand(len(inverse), 7)
    for model in (RiskPredictor(16, [32, 8], dropout=0.5), MultiRiskPredictor(["a", "b"], [16, 4], [32, 8], dropout=0.5).head("a")):
        model.train()
        first = model.mlp[0] if isinstance(model, RiskPredictor) else model.network.inputs[0][0]
        rows: list[int] = []
        hook = first.register_forward_hook(lambda module, inputs, output, rows=rows: rows.append(len(inputs[0])))
        torch.manual_seed(1)
        chunked = training_loss(model, states, target, loss_type, inverse)
        torch.manual_seed(1)
        expected = per_step_loss(model.logits(states)[inverse], target, loss_type)
        hook.remove()
        assert rows == [len(states), len(states)]
        torch.testing.assert_close(chunked.double(), expected, rtol=1e-5, atol=1e-7)
