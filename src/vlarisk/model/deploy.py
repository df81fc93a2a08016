"""Deploying a trained predictor: raw hidden states in as numpy or torch, one or a batch, risk out in the same kind.

:func:`vlarisk.model.checkpoints.load_predictor` returns a :class:`DeployedPredictor` (or
:class:`DeployedMultiPredictor`): the same module as training's normalising wrapper, called the way
a control loop calls it, without gradients, with a wrong size named against the checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vlarisk.core.errors import InputError
from vlarisk.model.models import NormalizedMultiRiskPredictor, NormalizedRiskPredictor


def deployed_call(model_call, hidden: Any, input_dim: int, checkpoint: str, *args) -> Any:
    """``model_call(batch, *args)`` on hidden states given as numpy, torch or nested lists, ``[D]`` or ``[B, D]``.

    Returns risk ``[7]`` or ``[B, 7]`` as the input came: a torch tensor on the input's device for
    torch input, else a float32 numpy array; never with gradients. A wrong size names the expected
    one and the checkpoint.
    """
    is_torch = isinstance(hidden, torch.Tensor)
    batch = hidden.detach() if is_torch else torch.as_tensor(np.asarray(hidden, dtype=np.float32))
    if batch.ndim not in (1, 2) or batch.shape[-1] != input_dim:
        raise InputError(
            f"{checkpoint}: the predictor takes hidden states of size {input_dim}, as [{input_dim}] or [batch, {input_dim}]; "
            f"got shape {list(batch.shape)}"
        )
    single = batch.ndim == 1
    with torch.no_grad():
        risk = model_call(batch.unsqueeze(0) if single else batch, *args)
    risk = risk[0] if single else risk
    return risk.to(hidden.device) if is_torch else risk.float().cpu().numpy()


class DeployedPredictor(NormalizedRiskPredictor):
    """A single-source predictor loaded from a checkpoint: raw hidden states in (numpy or torch, ``[D]``
    or ``[B, D]``), risk out in the same kind, without gradients (see :func:`deployed_call`)."""

    checkpoint: str = "checkpoint"

    @property
    def input_dim(self) -> int:
        return int(self.mean.shape[0])

    def __call__(self, hidden: Any) -> Any:
        return deployed_call(super().__call__, hidden, self.input_dim, self.checkpoint)


class DeployedMultiPredictor(NormalizedMultiRiskPredictor):
    """A multi-source predictor loaded from a checkpoint: ``model(hidden, source)`` as :class:`DeployedPredictor`."""

    checkpoint: str = "checkpoint"

    def input_dim(self, source: str) -> int:
        return int(self.source_predictor(source).mean.shape[0])

    def __call__(self, hidden: Any, source: str) -> Any:
        return deployed_call(super().__call__, hidden, self.input_dim(source), self.checkpoint, source)


def deployed(model: NormalizedRiskPredictor | NormalizedMultiRiskPredictor, checkpoint: str):
    """``model``'s weights and statistics as a :class:`DeployedPredictor` (or multi), in eval mode."""
    if isinstance(model, NormalizedMultiRiskPredictor):
        statistics = {name: (head.mean, head.std) for name, head in zip(model.sources, model.per_source, strict=True)}
        result = DeployedMultiPredictor(model.network, statistics)
    else:
        result = DeployedPredictor(model.predictor, model.mean, model.std)
    result.checkpoint = checkpoint
    return result.eval()
