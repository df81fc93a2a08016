"""Hand-off to activation steering: watch per-dimension risk, and push a model's activations.

:class:`RiskMonitor` turns each hidden state of a running VLA into a per-dimension risk, the riskiest
dimension and whether it crosses its alarm threshold. :func:`add_steering_hook` adds a vector to
the output of any submodule of a ``torch.nn.Module`` (a transformer block, say) until the returned
handle is removed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from vlarisk.core.constants import ACTION_DIMENSIONS, NUM_DIMENSIONS
from vlarisk.data.documents import read_checkpoint
from vlarisk.model.checkpoints import load_predictor
from vlarisk.model.models import NormalizedMultiRiskPredictor

FALLBACK_THRESHOLD = 0.5


def stored_alarm(path: str | os.PathLike, source: str | None = None) -> dict:
    """The ``alarm`` stored in a checkpoint (``source``'s for a multi-model one); empty if none."""
    checkpoint = read_checkpoint(path)
    entry = checkpoint.get("sources", {}).get(source, {}) if "sources" in checkpoint else checkpoint
    return entry.get("alarm") or {}


def calibrated_band(path: str | os.PathLike, source: str | None = None) -> dict:
    """The functional alarm band stored in a checkpoint: ``mean``, ``sd`` per step and the conformal ``quantile``."""
    band = stored_alarm(path, source).get("band")
    if not band or band.get("quantile") is None:
        raise ValueError(
            f"{path}: alarm['band'] holds no calibrated band (a checkpoint from before bands, or too few calibration successes): use alarm='constant'"
        )
    return band


@dataclass
class RiskReading:
    """The monitor's verdict on one hidden state ``[D]`` (scalars) or a batch ``[B, D]`` (lists)."""

    risk: torch.Tensor
    riskiest_index: int | list[int]
    riskiest_dimension: str | list[str]
    alarm: bool | list[bool]


class RiskMonitor:
    """Per-dimension risk of a stream of hidden states, with the riskiest dimension and an alarm.

    Parameters
    ----------
    predictor : path or nn.Module
        A checkpoint (``best_model.pt``) or a loaded model taking raw hidden states.
    threshold : float, sequence of 7 floats, or None
        Alarm level per dimension (one value for all); an alarm is a risk strictly above it. The
        default (``None``) is the checkpoint's calibrated alarm threshold (``alarm`` in
        ``best_model.pt``: a successful episode raises a false alarm with probability at most its
        ``alpha``), or 0.5, with a warning, for a model or checkpoint without one. The riskiest
        dimension is the one with the largest ``risk / threshold``, so with a single threshold it
        is simply the largest risk.
    source : str, optional
        Which source's input layer to use with a multi-model checkpoint (required there).
    device : str or torch.device
        Where the predictor runs.
    alarm : ``"constant"`` or ``"band"``
        ``"band"`` uses the checkpoint's functional band instead of ``threshold``: the alarm fires
        when the largest risk at step ``t`` of the episode exceeds ``mean[t] + quantile * sd[t]``
        (the band's last step beyond its end). Each :meth:`update` is one step (a batch: parallel
        episodes at the same step); :meth:`reset` starts a new episode.
    """

    def __init__(
        self,
        predictor: str | os.PathLike | nn.Module,
        threshold: float | Sequence[float] | None = None,
        source: str | None = None,
        device: str | torch.device = "cpu",
        alarm: str = "constant",
    ) -> None:
        is_path = isinstance(predictor, (str, os.PathLike))
        if alarm not in ("constant", "band"):
            raise ValueError(f"alarm must be 'constant' or 'band', got {alarm!r}")
        if alarm == "band" and not is_path:
            raise ValueError("alarm='band' needs a checkpoint path: the band is stored in best_model.pt")
        model = load_predictor(predictor, device) if is_path else predictor.to(device)
        self.band = calibrated_band(predictor, source) if alarm == "band" else None
        if threshold is None and self.band is None:
            stored = stored_alarm(predictor, source) if is_path else {}
            threshold = stored.get("threshold")
            if threshold is None:
                why = stored.get("warning") or stored.get("reason") or "a checkpoint trained by vlarisk stores one"
                warnings.warn(
                    f"no calibrated alarm threshold ({why}): alarming at {FALLBACK_THRESHOLD}, with no false-alarm bound", stacklevel=2
                )
                threshold = FALLBACK_THRESHOLD
        if isinstance(model, NormalizedMultiRiskPredictor):
            if source is None:
                raise ValueError(f"a multi-model predictor needs source= (one of {model.sources})")
            model = model.source_predictor(source)
        elif source is not None:
            raise ValueError("source= only applies to multi-model predictors")
        self.model = model.eval()
        self.device = torch.device(device)
        self.step = 0
        if self.band is not None:
            self._band_limit = torch.as_tensor(self.band["mean"], device=self.device) + self.band["quantile"] * torch.as_tensor(
                self.band["sd"], device=self.device
            )
            threshold = FALLBACK_THRESHOLD if threshold is None else threshold  # only weighs the riskiest dimension
        threshold = torch.as_tensor(threshold, dtype=torch.float32, device=self.device)
        if threshold.shape not in ((), (NUM_DIMENSIONS,)) or not bool((threshold > 0).all()):
            raise ValueError(f"threshold must be one positive value or {NUM_DIMENSIONS} of them, got {threshold.tolist()}")
        self.threshold = threshold.expand(NUM_DIMENSIONS)

    @torch.inference_mode()
    def update(self, hidden_state: torch.Tensor) -> RiskReading:
        """Score one hidden state ``[D]`` or a batch ``[B, D]``."""
        hidden = torch.as_tensor(hidden_state, dtype=torch.float32, device=self.device)
        single = hidden.ndim == 1
        risk = self.model(hidden.unsqueeze(0) if single else hidden).float()
        index = (risk / self.threshold).argmax(dim=1)
        if self.band is None:
            alarm = (risk > self.threshold).any(dim=1)
        else:
            alarm = risk.max(dim=1).values > self._band_limit[min(self.step, len(self._band_limit) - 1)]
        self.step += 1
        names = [ACTION_DIMENSIONS[i] for i in index.tolist()]
        if single:
            return RiskReading(risk[0], int(index[0]), names[0], bool(alarm[0]))
        return RiskReading(risk, index.tolist(), names, alarm.tolist())

    __call__ = update

    def reset(self) -> None:
        """Start a new episode: the band is read from its first step again."""
        self.step = 0


def add_steering_hook(module: nn.Module, layer: str | nn.Module, vector: torch.Tensor, scale: float = 1.0) -> RemovableHandle:
    """Add ``scale * vector`` to the output of ``layer`` (a dotted name in ``module`` or a submodule).

    Works for outputs that are tensors or tuples whose first element is the hidden tensor (as
    transformer blocks return); ``vector`` broadcasts over the last axis. Call ``.remove()`` on
    the returned handle to stop steering.
    """
    target = module.get_submodule(layer) if isinstance(layer, str) else layer
    if not any(target is candidate for candidate in module.modules()):
        raise ValueError(f"{type(target).__name__} is not a submodule of the given module")
    shift = scale * torch.as_tensor(vector).detach()

    def steer(_module: nn.Module, _inputs, output):
        if isinstance(output, torch.Tensor):
            return output + shift.to(output)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (output[0] + shift.to(output[0]), *output[1:])
        raise TypeError(f"cannot steer an output of type {type(output).__name__}: expected a tensor or a tuple starting with one")

    return target.register_forward_hook(steer)
