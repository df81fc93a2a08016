"""Steering hand-off: the risk monitor and the steering hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlarisk.model.models import MultiRiskPredictor, NormalizedRiskPredictor, RiskPredictor
from vlarisk.model.steering import RiskMonitor, add_steering_hook


class Block(nn.Module):
    """Transformer-block-like: returns ``(hidden, attention weights)``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, hidden):
        return self.linear(hidden), torch.ones(hidden.shape[0], 2)


class Tiny(nn.Module):
    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(width), Block(width)])

    def forward(self, hidden):
        for block in self.blocks:
            hidden, _ = block(hidden)
        return hidden


def test_tensor_output_shifts_by_the_vector_until_removed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    x, vector = torch.randn(2, 4), torch.tensor([1.0, -2.0, 0.5])
    before = model(x)
    handle = add_steering_hook(model, "2", vector, scale=2.0)
    torch.testing.assert_close(model(x), before + 2.0 * vector)
    handle.remove()
    torch.testing.assert_close(model(x), before)


def test_tuple_output_steers_its_hidden_tensor_by_module_object():
    torch.manual_seed(0)
    model = Tiny()
    x, vector = torch.randn(3, 6), torch.randn(6)
    before = model(x)
    handle = add_steering_hook(model, model.blocks[1], vector)
    torch.testing.assert_close(model(x), before + vector)
    handle.remove()
    torch.testing.assert_close(model(x), before)


def test_dotted_name_reaches_nested_layers():
    model = Tiny()
    x = torch.randn(1, 6)
    with torch.no_grad():
        clean = model.blocks[0](x)[0]
        handle = add_steering_hook(model, "blocks.0.linear", torch.ones(6))
        torch.testing.assert_close(model.blocks[0](x)[0], clean + 1)
    handle.remove()


def test_foreign_layers_and_unsteerable_outputs_are_refused():
    with pytest.raises(ValueError, match="not a submodule"):
        add_steering_hook(nn.Linear(2, 2), nn.Linear(2, 2), torch.zeros(2))

    class Named(nn.Module):
        def forward(self, x):
            return {"hidden": x}

    model = nn.Sequential(Named())
    add_steering_hook(model, "0", torch.zeros(2))
    with pytest.raises(TypeError, match="cannot steer"):
        model(torch.zeros(1, 2))


def linear_predictor() -> NormalizedRiskPredictor:
    """Risk of dimension d = sigmoid(hidden[d]) on 7-D hidden states."""
    probe = RiskPredictor(input_dim=7, hidden_dims=[])
    with torch.no_grad():
        probe.mlp[0].weight.copy_(torch.eye(7))
        probe.mlp[0].bias.zero_()
    return NormalizedRiskPredictor(probe, torch.zeros(7), torch.ones(7))


def test_monitor_reports_the_riskiest_dimension_and_the_alarm():
    monitor = RiskMonitor(linear_predictor(), threshold=0.9)
    quiet = monitor(torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    assert quiet.riskiest_index == 1 and quiet.riskiest_dimension == "y" and quiet.alarm is False
    assert quiet.risk.shape == (7,)
    batch = monitor.update(torch.tensor([[0.0] * 6 + [5.0], [0.0] * 7]))
    assert batch.riskiest_dimension[0] == "gripper" and batch.alarm == [True, False]


def test_per_dimension_thresholds_rank_by_risk_over_threshold():
    thresholds = [0.99, 0.6, 0.99, 0.99, 0.99, 0.99, 0.99]
    reading = RiskMonitor(linear_predictor(), threshold=thresholds)(torch.tensor([3.0, 1.0, 0, 0, 0, 0, 0]))
    assert reading.riskiest_dimension == "y" and reading.alarm is True
    with pytest.raises(ValueError, match="threshold"):
        RiskMonitor(linear_predictor(), threshold=[0.5, 0.5])


def test_monitor_loads_checkpoints_and_needs_a_source_for_multi_models(tmp_path):
    network = MultiRiskPredictor(["a", "b"], [5, 9], hidden_dims=[4])
    sources = {name: {"input_dim": dim, "normalization": {"mean": [0.0] * dim, "std": [1.0] * dim}} for name, dim in (("a", 5), ("b", 9))}
    path = tmp_path / "best_model.pt"
    torch.save({"model_config": network.model_config, "model_state_dict": network.state_dict(), "sources": sources}, path)
    with pytest.raises(ValueError, match="source="):
        RiskMonitor(path)
    hidden = torch.randn(9)
    reading = RiskMonitor(path, source="b")(hidden)
    with torch.no_grad():
        torch.testing.assert_close(reading.risk, network.eval()(hidden[None], "b")[0])


def test_band_monitor_on_a_checkpoint_without_a_band_says_so(tmp_path):
    network = MultiRiskPredictor(["a"], [5], hidden_dims=[4])
    sources = {"a": {"input_dim": 5, "normalization": {"mean": [0.0] * 5, "std": [1.0] * 5}, "alarm": {"threshold": 0.7}}}
    path = tmp_path / "best_model.pt"
    torch.save({"model_config": network.model_config, "model_state_dict": network.state_dict(), "sources": sources}, path)
    with pytest.raises(ValueError, match="no calibrated band"):
        RiskMonitor(path, source="a", alarm="band")
    assert float(RiskMonitor(path, source="a").threshold[0]) == pytest.approx(0.7)  # the constant one still works
