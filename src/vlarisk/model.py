"""The risk predictor MLP, its checkpoint-compatible construction, and a one-call loader.

``RiskPredictor(**checkpoint["model_config"])`` rebuilds a trained model exactly as in the training
guide (state-dict keys ``mlp.0.*``, ``mlp.3.*``, ``mlp.6.*`` with the defaults). Unlike the
reference, the output goes through a sigmoid rather than a ReLU: a ReLU head on mostly-zero labels
can die and emit a constant, while a sigmoid keeps a gradient everywhere and stays in [0, 1].
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from vlarisk.constants import NUM_DIMENSIONS
from vlarisk.errors import InputError, UnsafePickleError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}
OUTPUT_ACTIVATIONS = ("sigmoid", "identity", "relu")
# The reference code's checkpoints carry no output_activation: their head was a ReLU.
REFERENCE_OUTPUT_ACTIVATION = "relu"


class RiskPredictor(nn.Module):
    """MLP from a hidden state ``[B, input_dim]`` to a per-dimension risk ``[B, output_dim]``.

    Parameters
    ----------
    input_dim : int
        Hidden-state size of the VLA (4096 for OpenVLA).
    hidden_dims : sequence of int
        Width of each hidden layer; empty gives a linear probe.
    output_dim : int
        Number of action dimensions (7).
    dropout : float
        Dropout after each hidden activation.
    activation : str
        One of ``relu``, ``gelu``, ``tanh``, ``silu``, ``leaky_relu``.
    output_activation : str
        ``sigmoid`` (risk in [0, 1]), ``identity`` (raw scores) or ``relu`` (only to load the
        reference code's checkpoints, whose ReLU head is prone to collapse).
    """

    def __init__(
        self,
        input_dim: int = 4096,
        hidden_dims: Sequence[int] = (512, 256),
        output_dim: int = NUM_DIMENSIONS,
        dropout: float = 0.1,
        activation: str = "relu",
        output_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
        self.config = {
            "input_dim": int(input_dim),
            "hidden_dims": [int(h) for h in hidden_dims],
            "output_dim": int(output_dim),
            "dropout": float(dropout),
            "activation": activation,
            "output_activation": output_activation,
        }
        layers: list[nn.Module] = []
        width = int(input_dim)
        for size in self.config["hidden_dims"]:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, int(output_dim)))
        self.mlp = nn.Sequential(*layers)

    @property
    def model_config(self) -> dict:
        """Keyword arguments that rebuild this architecture (saved in checkpoints)."""
        return dict(self.config)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Pre-activation scores, used by the losses for numerical stability."""
        return self.mlp(hidden)

    @torch.no_grad()
    def start_at_prior(self, prior: np.ndarray) -> None:
        """Make every initial output equal the label prior ``[7]`` (the training split's mean label).

        The head's bias takes the prior's logit and its weights shrink tenfold, so the first
        optimiser steps start from the base rate instead of 0.5 and need not push every logit down
        past it, which on sparse labels saturates the sigmoid before anything is learnt.
        """
        head = self.mlp[-1]
        prior = torch.as_tensor(np.clip(np.asarray(prior, dtype=np.float64), 1e-4, 1 - 1e-4), dtype=head.bias.dtype)
        head.weight.mul_(0.1)
        head.bias.copy_(torch.logit(prior) if self.config["output_activation"] == "sigmoid" else prior)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        scores = self.logits(hidden)
        head = self.config["output_activation"]
        if head == "sigmoid":
            return torch.sigmoid(scores)
        return torch.relu(scores) if head == "relu" else scores


class NormalizedRiskPredictor(nn.Module):
    """A predictor that normalises raw hidden states itself with the training statistics."""

    def __init__(self, predictor: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.predictor = predictor
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.predictor((hidden.to(self.mean.dtype) - self.mean) / self.std)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data only, no code runs.

    numpy scalars, dtypes and arrays are allowed too (the reference's checkpoints hold numpy floats
    in ``val_metrics``); they rebuild data only, exactly as in :mod:`vlarisk.safe_pickle`.
    """
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a checkpoint file")
    try:
        with _numpy_safe_globals(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a plain pickle: refused below anyway
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused:
            name = refused.group(1) if "." in refused.group(1) else f"builtins.{refused.group(1)}"  # torch drops "builtins."
            raise UnsafePickleError(f"{path}: refusing to load global '{name}': checkpoints are read with weights_only=True (tensors and plain data only)") from None
        raise InputError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {_torch_error_detail(exc)})") from None
    if not isinstance(checkpoint, dict):
        raise InputError(f"{path}: not a checkpoint (expected a dict, got {type(checkpoint).__name__})")
    return checkpoint


def _torch_error_detail(exc: Exception) -> str:
    """The informative part of a ``torch.load`` error, on one line (torch's own spans paragraphs)."""
    text = str(exc)
    inner = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", text, re.S)
    detail = inner.group(1) if inner else text.split("This is an internal")[0]
    return " ".join(detail.split())[:300]


def _numpy_safe_globals():
    """Context allowing numpy's data-only globals in ``torch.load(weights_only=True)``."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # torch < 2.5
        return contextlib.nullcontext()
    core = np._core if hasattr(np, "_core") else np.core
    allowed: list = [np.ndarray, np.dtype, *(getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType"))]
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")):
        obj = getattr(getattr(core, module), name)
        allowed += [(obj, f"numpy._core.{module}.{name}"), (obj, f"numpy.core.{module}.{name}")]
    return safe_globals(allowed)


def predictor_from_checkpoint(checkpoint: dict, path: str = "checkpoint") -> NormalizedRiskPredictor:
    """Rebuild the single-source predictor of ``checkpoint`` with its normalisation."""
    try:
        model = RiskPredictor(**{"output_activation": REFERENCE_OUTPUT_ACTIVATION, **checkpoint["model_config"]})
        model.load_state_dict(checkpoint["model_state_dict"])
        stats = checkpoint["normalization"]
    except KeyError as exc:
        raise InputError(f"{path}: checkpoint lacks field {exc}") from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: weights do not fit the saved model_config ({' '.join(str(exc).split())[:300]})") from None
    input_dim = model.config["input_dim"]
    mean = torch.as_tensor(stats["mean"], dtype=torch.float32) if stats else torch.zeros(input_dim)
    std = torch.as_tensor(stats["std"], dtype=torch.float32) if stats else torch.ones(input_dim)
    return NormalizedRiskPredictor(model, mean, std).eval()


def load_predictor(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a trained checkpoint as a ready-to-use model that takes raw hidden states.

    >>> model = load_predictor("results/models/synthetic_a/best_model.pt")  # doctest: +SKIP
    >>> risk = model(torch.randn(1, 64))  # [1, 7], normalisation applied inside
    """
    checkpoint = read_checkpoint(path)
    if "sources" in checkpoint:
        from vlarisk.multi_model import multi_predictor_from_checkpoint

        return multi_predictor_from_checkpoint(checkpoint, str(path)).to(device)
    return predictor_from_checkpoint(checkpoint, str(path)).to(device)
