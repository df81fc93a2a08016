"""vlarisk: per-dimension risk predictors for robot Vision-Language-Action models.

The model API is imported on first use, so that code which only prepares data (or reads datasets)
never loads torch: importing it costs about 0.2 GiB of memory and a second of start-up.
"""

import importlib

from vlarisk.constants import ACTION_DIMENSIONS

__version__ = "0.1.0"
__all__ = ["ACTION_DIMENSIONS", "RiskMonitor", "RiskPredictor", "load_predictor", "__version__"]

_MODEL_API = {"RiskPredictor": "vlarisk.models", "load_predictor": "vlarisk.checkpoints", "RiskMonitor": "vlarisk.steering"}


def __getattr__(name: str):
    if name in _MODEL_API:
        return getattr(importlib.import_module(_MODEL_API[name]), name)
    raise AttributeError(f"module 'vlarisk' has no attribute {name!r}")
