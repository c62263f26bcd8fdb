"""The recognition model (docs/method.md, sections 2-6): one module per part, and ``build``: the
same network built the same way everywhere, with fingerprints of its frozen weights."""

from ..config import LossConfig, ModelConfig
from .losses import MERLoss
from .network import MERNet

__all__ = ["LossConfig", "MERLoss", "MERNet", "ModelConfig"]
