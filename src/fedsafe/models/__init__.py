"""Models: the papers' CNN and a registry by name."""

from .cnn import PaperCNN, conv_widths
from .registry import MODELS, build_model

__all__ = ["PaperCNN", "conv_widths", "MODELS", "build_model"]
