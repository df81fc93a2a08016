"""Scoring many hidden states at once: large batches, no autograd, normalisation on the fly, each distinct state once."""

from __future__ import annotations

import numpy as np
import torch

from vlarisk.core.device import autocast, flush_denormals
from vlarisk.data.dataset import StepStates


def gather_rows(hidden: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Copy ``hidden[rows]`` into ``out[:len(rows)]`` (no temporary) and return that view.

    A run of consecutive rows is copied as one slice; otherwise ``np.take`` gathers them straight
    from the (memory-mapped) array into ``out``. ``rows`` must be valid row indices. For a
    per-step :class:`~vlarisk.data.dataset.StepStates` view the rows' states are gathered.
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

    For a per-step :class:`~vlarisk.data.dataset.StepStates` view each distinct state among the rows is
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
