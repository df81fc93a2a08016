"""The risk predictor networks: one source (:class:`RiskPredictor`) or several (:class:`MultiRiskPredictor`).

``RiskPredictor(**checkpoint["model_config"])`` rebuilds a trained model exactly as in the training
guide (state-dict keys ``mlp.0.*``, ``mlp.3.*``, ``mlp.6.*`` with the defaults). The output goes
through a sigmoid: it stays in [0, 1] and keeps a gradient everywhere, so it cannot die to a
constant as a ReLU head on mostly-zero labels can. A multi-source model gives each source its own
input layer into one shared trunk, so sources of different hidden sizes train together. The
``Normalized*`` wrappers take raw hidden states and normalise them with the training statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from vlarisk.core.constants import NUM_DIMENSIONS
from vlarisk.core.settings import ACTIVATIONS as ACTIVATION_NAMES
from vlarisk.core.settings import TrainingConfig, defaults

DEFAULT_HIDDEN_DIMS = tuple(defaults(TrainingConfig)["hidden_dims"])  # the architecture of the settings' defaults

# The layer of each activation the settings name (vlarisk.core.settings.ACTIVATIONS), in their order.
ACTIVATIONS = dict(zip(ACTIVATION_NAMES, (nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.LeakyReLU), strict=True))
OUTPUT_ACTIVATIONS = ("sigmoid", "identity", "relu")


def layer_config(hidden_dims: Sequence[int], output_dim: int, dropout: float, activation: str, output_activation: str) -> dict:
    """The ``model_config`` entries both networks share; ``ValueError`` for an unknown activation."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
    return {
        "hidden_dims": [int(h) for h in hidden_dims],
        "output_dim": int(output_dim),
        "dropout": float(dropout),
        "activation": activation,
        "output_activation": output_activation,
    }


def hidden_layer(width_in: int, width_out: int, activation: str, dropout: float) -> list[nn.Module]:
    """``Linear``, activation and dropout: one hidden layer."""
    return [nn.Linear(width_in, width_out), ACTIVATIONS[activation](), nn.Dropout(dropout)]


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
        training guide's checkpoints, whose ReLU head is prone to collapse).
    """

    def __init__(
        self,
        input_dim: int = 4096,
        hidden_dims: Sequence[int] = DEFAULT_HIDDEN_DIMS,
        output_dim: int = NUM_DIMENSIONS,
        dropout: float = TrainingConfig.dropout,
        activation: str = TrainingConfig.activation,
        output_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.config = {"input_dim": int(input_dim), **layer_config(hidden_dims, output_dim, dropout, activation, output_activation)}
        layers: list[nn.Module] = []
        width = int(input_dim)
        for size in self.config["hidden_dims"]:
            layers += hidden_layer(width, size, activation, dropout)
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

    def activate(self, scores: torch.Tensor) -> torch.Tensor:
        """The output activation applied to logits."""
        head = self.config["output_activation"]
        if head == "sigmoid":
            return torch.sigmoid(scores)
        return torch.relu(scores) if head == "relu" else scores

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
        return self.activate(self.logits(hidden))


class NormalizedRiskPredictor(nn.Module):
    """A predictor that normalises raw hidden states itself with the training statistics."""

    def __init__(self, predictor: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.predictor = predictor
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.predictor((hidden.to(self.mean.dtype) - self.mean) / self.std)


class MultiRiskPredictor(nn.Module):
    """Per-source input layers into one shared MLP trunk; ``forward(hidden, source)``.

    Parameters
    ----------
    sources : sequence of str
        Source names, in the order of their input layers (``inputs.<i>.*`` in the state dict).
    input_dims : sequence of int
        Hidden-state size of each source.
    hidden_dims : sequence of int
        Widths of the hidden layers; the first is the input layers' width, the rest form the trunk.
    output_dim, dropout, activation, output_activation
        As for :class:`RiskPredictor`.
    """

    def __init__(
        self,
        sources: Sequence[str],
        input_dims: Sequence[int],
        hidden_dims: Sequence[int] = DEFAULT_HIDDEN_DIMS,
        output_dim: int = NUM_DIMENSIONS,
        dropout: float = TrainingConfig.dropout,
        activation: str = TrainingConfig.activation,
        output_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        if len(sources) != len(input_dims) or len(set(sources)) != len(sources):
            raise ValueError(f"need one input size per distinct source, got sources={list(sources)} input_dims={list(input_dims)}")
        if not hidden_dims:
            raise ValueError("a multi-source model needs at least one hidden layer to share")
        width = int(hidden_dims[0])
        self.config = {
            "sources": [str(s) for s in sources],
            "input_dims": [int(d) for d in input_dims],
            **layer_config(hidden_dims, output_dim, dropout, activation, output_activation),
        }
        self.inputs = nn.ModuleList(nn.Sequential(*hidden_layer(dim, width, activation, dropout)) for dim in self.config["input_dims"])
        self.trunk = RiskPredictor(width, hidden_dims[1:], output_dim, dropout, activation, output_activation)

    @property
    def model_config(self) -> dict:
        """Keyword arguments that rebuild this architecture (saved in checkpoints)."""
        return dict(self.config)

    def index(self, source: str) -> int:
        """Position of ``source``'s input layer."""
        try:
            return self.config["sources"].index(source)
        except ValueError:
            raise KeyError(f"unknown source {source!r}; this model knows {self.config['sources']}") from None

    def logits(self, hidden: torch.Tensor, source: str) -> torch.Tensor:
        """Pre-activation scores of ``source``'s (normalised) hidden states."""
        return self.trunk.logits(self.inputs[self.index(source)](hidden))

    def start_at_prior(self, prior: np.ndarray) -> None:
        """Start every output at the label prior (see :meth:`RiskPredictor.start_at_prior`)."""
        self.trunk.start_at_prior(prior)

    def forward(self, hidden: torch.Tensor, source: str) -> torch.Tensor:
        return self.trunk(self.inputs[self.index(source)](hidden))

    def head(self, source: str) -> SourceHead:
        """A one-argument view for ``source``, usable wherever a :class:`RiskPredictor` is."""
        return SourceHead(self, source)


class SourceHead(nn.Module):
    """The shared model seen through one source's input layer (shares its weights)."""

    def __init__(self, network: MultiRiskPredictor, source: str) -> None:
        super().__init__()
        self.network, self.source = network, source
        network.index(source)  # fail early on an unknown source

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.network.logits(hidden, self.source)

    def activate(self, scores: torch.Tensor) -> torch.Tensor:
        return self.network.trunk.activate(scores)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.network(hidden, self.source)


class NormalizedMultiRiskPredictor(nn.Module):
    """A multi-source predictor on raw hidden states: each source normalised with its own statistics."""

    def __init__(self, network: MultiRiskPredictor, statistics: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.network = network
        self.per_source = nn.ModuleList(NormalizedRiskPredictor(network.head(name), *statistics[name]) for name in self.sources)

    @property
    def sources(self) -> list[str]:
        return list(self.network.config["sources"])

    def source_predictor(self, source: str) -> NormalizedRiskPredictor:
        """``source``'s predictor alone: raw ``[B, D_source]`` in, risk ``[B, 7]`` out."""
        return self.per_source[self.network.index(source)]

    def forward(self, hidden: torch.Tensor, source: str) -> torch.Tensor:
        return self.source_predictor(source)(hidden)
