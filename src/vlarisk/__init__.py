"""vlarisk: per-dimension risk predictors for robot Vision-Language-Action models.

The model API is imported on first use, so that code which only prepares data (or reads datasets)
never loads torch: importing it costs about 0.2 GiB of memory and a second of start-up.
"""

import importlib
import os

from vlarisk.core.constants import ACTION_DIMENSIONS

# OpenMP threads waiting for work sleep instead of spinning: on cores shared with other jobs a
# spinning pool takes the cores from the work itself (benchmarks/threads.py: a 2-thread training
# step on a busy 2-core machine took 360 ms spinning, 5 ms sleeping). Set before torch loads
# OpenMP; a value already in the environment wins; processes started from here (Snakemake's jobs
# under a Snakefile that imports vlarisk) inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["ACTION_DIMENSIONS", "RiskMonitor", "RiskPredictor", "load_predictor", "__version__"]

_MODEL_API = {
    "RiskPredictor": "vlarisk.model.models",
    "load_predictor": "vlarisk.model.checkpoints",
    "RiskMonitor": "vlarisk.model.steering",
}


def __getattr__(name: str):
    if name in _MODEL_API:
        return getattr(importlib.import_module(_MODEL_API[name]), name)
    raise AttributeError(f"module 'vlarisk' has no attribute {name!r}")
