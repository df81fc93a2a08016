"""A loaded predictor deploys: numpy or torch, one state or a batch, no gradients, clear size errors;
``RiskMonitor`` comes from ``vlarisk`` itself without making ``import vlarisk`` load torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from vlarisk.core.errors import InputError
from vlarisk.model.checkpoints import load_predictor
from vlarisk.model.models import RiskPredictor

DIM = 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint with normalisation statistics, and the plain network and statistics it holds."""
    torch.manual_seed(0)
    config = {"input_dim": DIM, "hidden_dims": [5], "output_dim": 7, "dropout": 0.0, "output_activation": "sigmoid"}
    network = RiskPredictor(**config).eval()
    mean, std = np.linspace(-1, 1, DIM).astype(np.float32), np.linspace(0.5, 2, DIM).astype(np.float32)
    path = tmp_path_factory.mktemp("model") / "best_model.pt"
    normalization = {"mean": mean.tolist(), "std": std.tolist(), "enabled": True}
    torch.save({"model_config": config, "model_state_dict": network.state_dict(), "normalization": normalization}, path)
    return path, network, mean, std


def expected_risk(checkpoint, hidden: np.ndarray) -> np.ndarray:
    """The risk recomputed by hand: normalise with the saved statistics, run the plain network."""
    _, network, mean, std = checkpoint
    with torch.no_grad():
        return network(torch.from_numpy((np.atleast_2d(hidden) - mean) / std)).numpy()


def test_numpy_in_numpy_out_one_state_or_a_batch(checkpoint):
    model = load_predictor(checkpoint[0])
    batch = np.random.default_rng(0).normal(size=(4, DIM)).astype(np.float32)
    risk = model(batch)
    assert type(risk) is np.ndarray and risk.shape == (4, 7) and risk.dtype == np.float32
    np.testing.assert_allclose(risk, expected_risk(checkpoint, batch), rtol=1e-5, atol=1e-6)
    single = model(batch[1])
    assert single.shape == (7,)
    np.testing.assert_allclose(single, expected_risk(checkpoint, batch[1])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(batch[1].astype(np.float64).tolist()), single, rtol=1e-6)


def test_torch_in_torch_out_without_gradients(checkpoint):
    model = load_predictor(checkpoint[0])
    hidden = torch.randn(3, DIM, requires_grad=True)
    risk = model(hidden)
    assert isinstance(risk, torch.Tensor) and risk.shape == (3, 7)
    assert risk.grad_fn is None and not risk.requires_grad
    np.testing.assert_allclose(risk.numpy(), expected_risk(checkpoint, hidden.detach().numpy()), rtol=1e-5, atol=1e-6)
    assert model(hidden[0]).shape == (7,)


@pytest.mark.parametrize("shape", [(DIM + 1,), (2, DIM - 1), (1, 2, DIM), ()])
def test_a_wrong_shape_names_the_size_and_the_checkpoint(checkpoint, shape):
    model = load_predictor(checkpoint[0])
    with pytest.raises(InputError) as caught:
        model(np.zeros(shape, np.float32))
    message = str(caught.value)
    assert message.startswith(f"{checkpoint[0]}: the predictor takes hidden states of size {DIM}, ") and message.endswith(
        f"got shape {list(shape)}"
    )


def test_risk_monitor_is_exported_lazily():
    code = (
        "import sys, vlarisk\n"
        "assert 'torch' not in sys.modules\n"
        "from vlarisk import RiskMonitor\n"
        "assert RiskMonitor.__module__ == 'vlarisk.model.steering' and 'RiskMonitor' in vlarisk.__all__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
