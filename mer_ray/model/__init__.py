"""The recognition model (METHOD.md sections 2-6): one module per part."""

from .config import VARIANTS, LossConfig, ModelConfig, from_dict, variant
from .losses import MERLoss
from .network import MERNet

__all__ = ["VARIANTS", "LossConfig", "MERLoss", "MERNet", "ModelConfig", "from_dict", "variant"]
