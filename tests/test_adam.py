"""vlarisk.train.adam.FusedAdam takes torch.optim.Adam's fused steps exactly, and resumes from its state (and back)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vlarisk.train.adam import FusedAdam

OPTIONS = dict(lr=1e-2, weight_decay=1e-3)


def model_with_two_heads() -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict({"trunk": nn.Linear(8, 16), "a": nn.Linear(16, 3), "b": nn.Linear(16, 3)})


def train(model: nn.ModuleDict, optimizer, steps: range) -> None:
    """Steps on alternating heads, so that the other head has no gradient (as a multi-source model's)."""
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        head = model["a"] if step % 3 else model["b"]  # head b first steps at step 0, then every third step
        optimizer.zero_grad(set_to_none=True)
        head(torch.relu(model["trunk"](torch.randn(32, 8, generator=generator)))).square().mean().backward()
        optimizer.step()


def assert_same_weights(model: nn.Module, reference: nn.Module) -> None:
    for (name, tensor), expected in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(tensor, expected), name


def test_steps_equal_torch_s_fused_adam():
    ours, reference = model_with_two_heads(), model_with_two_heads()
    train(ours, FusedAdam(ours.parameters(), **OPTIONS), range(10))
    train(reference, torch.optim.Adam(reference.parameters(), fused=True, **OPTIONS), range(10))
    assert_same_weights(ours, reference)


@pytest.mark.parametrize("first, second", [("torch", "ours"), ("ours", "torch")])
def test_a_run_resumes_from_either_optimiser_s_state(first, second):
    """Five steps with one optimiser, its state_dict saved and loaded into a fresh other one on a
    copy of the model, five more steps: the same weights as ten steps of torch's."""
    make = {"torch": lambda params: torch.optim.Adam(params, fused=True, **OPTIONS), "ours": lambda params: FusedAdam(params, **OPTIONS)}
    reference = model_with_two_heads()
    train(reference, make["torch"](reference.parameters()), range(10))
    model = model_with_two_heads()
    optimizer = make[first](model.parameters())
    train(model, optimizer, range(5))
    saved = copy.deepcopy(optimizer.state_dict())
    resumed = make[second](model.parameters())
    resumed.load_state_dict(saved)
    train(model, resumed, range(5, 10))
    assert_same_weights(model, reference)


def test_state_dict_has_torch_s_layout():
    model = model_with_two_heads()
    ours, theirs = FusedAdam(model.parameters(), **OPTIONS), torch.optim.Adam(model.parameters(), fused=True, **OPTIONS)
    train(model, ours, range(2))
    train(model, theirs, range(2))
    assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]
    assert ours.state_dict()["state"].keys() == theirs.state_dict()["state"].keys()
