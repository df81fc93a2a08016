"""Telling a model that has stopped learning from one that ranks risk, from its scores alone.

A collapsed model gives (nearly) the same risk to every step: its logits have no spread relative
to their size, or sit where the sigmoid is flat, or rank positives no better than chance. The
tests are relative, so a collapse at a spread of 1e-4 is caught as surely as one at 1e-9.
"""

from __future__ import annotations

import numpy as np

SATURATED_LOGIT = 12.0  # |logit| beyond which the sigmoid's slope is below 6.2e-6
MIN_RELATIVE_SPREAD = 1e-3  # logit std per unit of (1 + |mean logit|)
MAX_SATURATED_SHARE = 0.999
CHANCE_MARGIN = 0.02  # a mean AUC at most 0.5 + this is no better than chance


def logits_of(risk: np.ndarray) -> np.ndarray:
    """Logits of sigmoid outputs, in float64; outputs of exactly 0 or 1 map to -/+ 40."""
    p = np.clip(np.asarray(risk, dtype=np.float64), 1e-300, 1.0)
    with np.errstate(divide="ignore"):
        logits = np.log(p) - np.log1p(-p)
    return np.clip(logits, -40.0, 40.0)


def collapse_reasons(risk: np.ndarray, mean_auc: float | None) -> list[str]:
    """Why the scores ``risk`` ``[N, 7]`` (sigmoid outputs) look collapsed; empty for a healthy model.

    A dimension is collapsed when its logit spread is tiny relative to the logits' size, or when
    nearly all its outputs are saturated; the run is collapsed when every dimension is, or when
    the mean AUC over the defined dimensions is no better than chance.
    """
    risk = np.asarray(risk)
    if len(risk) < 2:
        return []
    logits = logits_of(risk)
    spread = logits.std(axis=0) / (1.0 + np.abs(logits.mean(axis=0)))
    saturated = (np.abs(logits) > SATURATED_LOGIT).mean(axis=0)
    reasons = []
    if np.all(spread < MIN_RELATIVE_SPREAD):
        reasons.append(f"no spread: logit std / (1 + |mean logit|) is at most {spread.max():.2e} in every dimension")
    if np.all(saturated > MAX_SATURATED_SHARE):
        reasons.append(f"saturated: at least {100 * saturated.min():.1f}% of outputs in every dimension have |logit| > {SATURATED_LOGIT:g}")
    if mean_auc is not None and mean_auc <= 0.5 + CHANCE_MARGIN:
        reasons.append(f"chance ranking: mean AUC {mean_auc:.3f} is not above 0.5 + {CHANCE_MARGIN}")
    return reasons
