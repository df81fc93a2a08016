"""vlarisk: per-dimension risk predictors for robot Vision-Language-Action models."""

from vlarisk.constants import ACTION_DIMENSIONS
from vlarisk.model import RiskPredictor, load_predictor

__version__ = "0.1.0"
__all__ = ["ACTION_DIMENSIONS", "RiskPredictor", "load_predictor", "__version__"]
