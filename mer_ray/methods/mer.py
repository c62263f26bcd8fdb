"""The paper's model as a method: LoRA DinoV2 with SFA and DGAT and the dynamic-convolution
fusion, trained by ``train/fold.py``; every other model field of the configuration is its."""

from __future__ import annotations

from ..config import ExperimentConfig
from .registry import Method, register


def _mer_fit(job, device, resume=None, on_epoch=None, cache=None, every_epoch=None):
    from ..train.fold import fit_fold

    return fit_fold(job, device, resume, on_epoch, cache, every_epoch=every_epoch)


def _mer_parameters(exp: ExperimentConfig, classes: int) -> int:
    from ..model.encoder import RANDOM
    from ..model.network import MERNet

    return MERNet(exp.model, classes, exp.data.size, RANDOM).parameter_counts()[1]


register(Method("mer", "the paper's model: LoRA DinoV2 + SFA + DGAT + dynamic fusion",
                _mer_fit, _mer_parameters, uses_backbone=True))
