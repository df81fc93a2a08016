"""Early stopping: training ends once ``patience`` epochs in a row have not beaten the best epoch by more than ``min_delta``.

The expected stop epoch is recomputed by a plain loop over a full run's validation scores, and the
early-stopped run must match the full run epoch for epoch up to its stop (same best epoch, same
weights), so stopping never changes the checkpoint that is kept.
"""

from __future__ import annotations

import pytest
import torch

from vlarisk.core.settings import DEFAULT_PATIENCE, TrainingConfig
from vlarisk.train.sources import open_source
from vlarisk.train.training import Trainer, improves, selection_score, stop_record

EPOCHS = 12
PATIENCE = 2
SMALL = dict(hidden_dims=[8], batch_size=64, lr=0.01, device="cpu")


def expected_stop(scores: list[tuple[bool, float]], patience: int, epochs: int, min_delta: float) -> tuple[int, int]:
    """``(stop epoch, best epoch)`` of a run with ``patience`` and ``min_delta``, from every epoch's
    selection score: a new best is healthy where the best is collapsed, or more than ``min_delta`` higher."""
    best_epoch, best_healthy, best = 0, False, float("-inf")
    for epoch, (healthy, value) in enumerate(scores, start=1):
        if (healthy and not best_healthy) or (healthy == best_healthy and value > best + min_delta):
            best_epoch, best_healthy, best = epoch, healthy, value
        if epoch - best_epoch >= patience:
            return epoch, best_epoch
    return epochs, best_epoch


def train(dataset_path, output_dir, patience: int, resume: bool = False):
    """A small CPU run on the tiny dataset (continuing ``output_dir``'s ``latest.pt`` if ``resume``): its outcome and trainer."""
    source = open_source("tiny", str(dataset_path), None, None, val_fraction=0.3, test_fraction=0.1, seed=0)
    config = TrainingConfig(epochs=EPOCHS, patience=patience, **SMALL)
    trainer = Trainer([source], config, output_dir, "tiny", log=lambda _: None)
    if resume:
        trainer.resume()
    return trainer.fit(), trainer


@pytest.fixture(scope="module")
def full_run(dataset_path, tmp_path_factory):
    """Every epoch run (``patience`` 0)."""
    return train(dataset_path, tmp_path_factory.mktemp("full"), patience=0)


def test_patience_zero_runs_every_epoch(full_run):
    outcome, trainer = full_run
    assert len(outcome.history["train_loss"]) == EPOCHS
    assert outcome.history["stop"]["reason"] == "epochs" and outcome.history["stop"]["epoch"] == EPOCHS


def test_early_stop_keeps_the_full_runs_best_checkpoint(full_run, dataset_path, tmp_path):
    full, _ = full_run
    scores = [selection_score(metrics) for metrics in full.history["val_metrics"]]
    stop, best = expected_stop(scores, PATIENCE, EPOCHS, TrainingConfig().min_delta)
    assert stop < EPOCHS, "the tiny run must plateau within EPOCHS for this test to check stopping"
    early, trainer = train(dataset_path, tmp_path, patience=PATIENCE)
    assert len(early.history["train_loss"]) == stop
    assert early.history["stop"] == {"epoch": stop, "reason": "patience", "detail": early.history["stop"]["detail"]}
    assert early.history["val_loss"] == full.history["val_loss"][:stop]
    assert early.best_epoch == best
    if full.best_epoch <= stop:
        assert early.best_epoch == full.best_epoch
        for name, weight in early.model.state_dict().items():
            assert torch.equal(weight, full.model.state_dict()[name]), name
    latest = torch.load(tmp_path / "latest.pt", weights_only=False)
    assert latest["history"]["stop"]["reason"] == "patience"


def test_the_alarm_is_saved_with_the_best_epochs_own_checkpoint(dataset_path, tmp_path):
    """``save_best`` writes the best epoch's checkpoint as training wrote it, alarm added, not the
    state of the epoch training stopped at (its history and optimiser went on changing)."""
    early, trainer = train(dataset_path, tmp_path, patience=PATIENCE)
    assert early.best_epoch < len(early.history["train_loss"]), "needs a run that went on past its best epoch"
    as_trained = torch.load(tmp_path / "best_model.pt", weights_only=False)
    trainer.save_best({"tiny": {"threshold": 0.25}})
    saved = torch.load(tmp_path / "best_model.pt", weights_only=False)
    assert saved.pop("alarm") == {"threshold": 0.25} and "alarm" not in as_trained
    assert saved["epoch"] == early.best_epoch and len(saved["history"]["train_loss"]) == early.best_epoch
    assert saved.keys() == as_trained.keys()
    for name, value in as_trained["model_state_dict"].items():
        assert torch.equal(saved["model_state_dict"][name], value), name
    for index, state in as_trained["optimizer_state_dict"]["state"].items():
        for key, value in state.items():
            assert torch.equal(saved["optimizer_state_dict"]["state"][index][key], value), (index, key)
    latest = torch.load(tmp_path / "latest.pt", weights_only=False)
    assert not torch.equal(latest["optimizer_state_dict"]["state"][0]["exp_avg"], saved["optimizer_state_dict"]["state"][0]["exp_avg"])


def test_stop_record_counts_epochs_since_the_best():
    assert stop_record(epoch=5, best_epoch=3, epochs=50, patience=2)["reason"] == "patience"
    assert stop_record(epoch=4, best_epoch=3, epochs=50, patience=2) is None
    assert stop_record(epoch=40, best_epoch=1, epochs=50, patience=0) is None
    assert stop_record(epoch=50, best_epoch=50, epochs=50, patience=2)["reason"] == "epochs"


def test_a_new_best_must_beat_the_best_by_more_than_min_delta():
    best = {"epoch": 7, "score": 0.7893, "healthy": True}
    assert not improves((True, 0.7899), best, min_delta=0.002)  # a plateau's noise keeps epoch 7
    assert improves((True, 0.7899), best, min_delta=0.0)
    assert improves((True, 0.7914), best, min_delta=0.002)
    assert improves((True, 0.5), {"epoch": 3, "score": 0.9, "healthy": False}, min_delta=0.002)  # healthy beats collapsed
    assert not improves((False, 0.99), best, min_delta=0.0)


def test_negative_patience_or_min_delta_is_refused():
    with pytest.raises(ValueError, match="patience must be >= 0"):
        TrainingConfig(patience=-1)
    with pytest.raises(ValueError, match="min_delta must be >= 0"):
        TrainingConfig(min_delta=-0.001)
    assert TrainingConfig().patience == DEFAULT_PATIENCE > 0


def test_a_run_stopped_early_resumes_only_with_more_patience(full_run, dataset_path, tmp_path):
    """The same patience adds no epoch; patience 0 continues to the last epoch exactly as the full run."""
    full, _ = full_run
    early, _ = train(dataset_path, tmp_path, patience=PATIENCE)
    stop = len(early.history["train_loss"])
    again, _ = train(dataset_path, tmp_path, patience=PATIENCE, resume=True)
    assert len(again.history["train_loss"]) == stop
    continued, _ = train(dataset_path, tmp_path, patience=0, resume=True)
    assert continued.history["val_loss"] == full.history["val_loss"]
    assert continued.best_epoch == full.best_epoch and continued.history["stop"]["reason"] == "epochs"
