"""Scoring hidden states: many at once for evaluation (large batches, no autograd, normalisation on
the fly, each distinct state once), and one at a time for deployment (:class:`DeployedPredictor`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vlarisk.dataset import StepStates
from vlarisk.device import autocast, flush_denormals
from vlarisk.errors import InputError
from vlarisk.models import NormalizedMultiRiskPredictor, NormalizedRiskPredictor


def gather_rows(hidden: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Copy ``hidden[rows]`` into ``out[:len(rows)]`` (no temporary) and return that view.

    A run of consecutive rows is copied as one slice; otherwise ``np.take`` gathers them straight
    from the (memory-mapped) array into ``out``. ``rows`` must be valid row indices. For a
    per-step :class:`~vlarisk.dataset.StepStates` view the rows' states are gathered.
    """
    if isinstance(hidden, StepStates):
        hidden, rows = hidden.states, np.asarray(hidden.index[np.asarray(rows)], dtype=np.int64)
    n = len(rows)
    target = out[:n]
    if n == 0:
        return target
    first, last = int(rows[0]), int(rows[-1])
    if last - first == n - 1 and (n < 3 or bool(np.all(np.diff(rows) == 1))):
        target[...] = hidden[first : last + 1]
    elif isinstance(hidden, np.ndarray) and hidden.dtype == out.dtype:
        np.take(hidden, rows, axis=0, out=target, mode="clip")  # "clip": unbuffered; rows are checked by callers
    else:
        target[...] = hidden[rows]
    return target


@torch.inference_mode()
@flush_denormals()
def predict_rows(
    model: torch.nn.Module,
    hidden: np.ndarray,
    rows: np.ndarray,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
    batch_rows: int = 16384,
    bf16: bool = False,
) -> np.ndarray:
    """Risk predictions ``[len(rows), 7]`` (float32) for ``hidden[rows]`` in eval mode.

    Rows are gathered into one reused host buffer of ``batch_rows`` rows and normalised in place
    (``(x - mean) / std``, the same arithmetic as training), so scoring holds one batch of inputs
    at a time; the predictions are written into one preallocated array. ``batch_rows`` is kept at
    16384 by default because fp32 matrix products can round differently at other batch sizes, and
    validation metrics should not move with a memory setting.

    For a per-step :class:`~vlarisk.dataset.StepStates` view each distinct state among the rows is
    scored once (in blocks of ``batch_rows`` states, in ascending order) and its prediction is
    copied to each of its steps.
    """
    rows = np.asarray(rows)
    if isinstance(hidden, StepStates):
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= len(hidden)):
            raise IndexError(f"row index out of range for {len(hidden)} hidden states")
        states, inverse = np.unique(np.asarray(hidden.index[rows], dtype=np.int64), return_inverse=True)
        per_state = predict_rows(model, hidden.states, states, mean, std, device, batch_rows, bf16)
        return per_state[inverse.reshape(-1)]
    was_training = model.training
    model.eval()
    mean, std = mean.to(device), std.to(device)
    prediction = None
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= len(hidden)):
        raise IndexError(f"row index out of range for {len(hidden)} hidden states")
    buffer = np.empty((min(batch_rows, len(rows)), hidden.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), batch_rows):
        block = torch.from_numpy(gather_rows(hidden, rows[start : start + batch_rows], buffer))
        block = block.to(device) if device.type != "cpu" else block
        block.sub_(mean).div_(std)
        with autocast(device, bf16):
            output = model(block).float().cpu()
        if prediction is None:
            prediction = torch.empty((len(rows), output.shape[1]), dtype=torch.float32)
        prediction[start : start + len(output)] = output
    model.train(was_training)
    if prediction is None:
        return np.zeros((0, 7), dtype=np.float32)
    return prediction.numpy()


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
