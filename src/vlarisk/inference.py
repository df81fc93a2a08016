"""Scoring many hidden states at once: large batches, no autograd, normalisation on the fly."""

from __future__ import annotations

import numpy as np
import torch

from vlarisk.device import autocast


@torch.inference_mode()
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
    """Risk predictions ``[len(rows), 7]`` (float32) for ``hidden[rows]`` in eval mode."""
    was_training = model.training
    model.eval()
    mean, std = mean.to(device), std.to(device)
    outputs = []
    for start in range(0, len(rows), batch_rows):
        block = torch.from_numpy(np.asarray(hidden[rows[start : start + batch_rows]], dtype=np.float32)).to(device)
        with autocast(device, bf16):
            outputs.append(model((block - mean) / std).float().cpu())
    model.train(was_training)
    if not outputs:
        return np.zeros((0, 7), dtype=np.float32)
    return torch.cat(outputs).numpy()
