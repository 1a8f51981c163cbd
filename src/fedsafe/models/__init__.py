"""Models: the papers' CNN, a registry by name, MONAI networks and user factories (``external.py``)."""

from .cnn import PaperCNN, conv_widths
from .external import MONAI_NETWORKS, ModelError
from .model_registry import MODELS, build_model, check_model, describe_model

__all__ = ["PaperCNN", "conv_widths", "MODELS", "MONAI_NETWORKS", "ModelError", "build_model", "check_model",
           "describe_model"]
