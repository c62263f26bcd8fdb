"""The paper's model as a method: LoRA DinoV2 with SFA and DGAT and the dynamic-convolution
fusion, trained by ``train/fold.py``; every other model field of the configuration is its."""

from __future__ import annotations

from ...config import ExperimentConfig
from ..registry import Method, register


def _mer_fit(job, device, resume=None, on_epoch=None, cache=None, every_epoch=None):
    from .fit import fit_fold

    return fit_fold(job, device, resume, on_epoch, cache, every_epoch=every_epoch)


def _mer_parameters(exp: ExperimentConfig, classes: int) -> int:
    from ...model.encoder import RANDOM
    from ...model.network import MERNet

    return MERNet(exp.model, classes, exp.data.size, RANDOM).parameter_counts()[1]


def augmentation(exp: ExperimentConfig) -> str:
    """What the training clips went through, in words."""
    tc = exp.train
    if tc.cache_trunk and tc.cached_views > 1:
        return (f"cached views: each epoch a training clip is shown as aligned or as one of "
                f"its {tc.cached_views - 1} augmented view(s) (flip + affine, drawn once per "
                f"clip and view, encoded with the trunk tokens)")
    if tc.cache_trunk:
        return "none: trained from cached frozen-trunk tokens"
    return "flip + affine on training clips, drawn every epoch" if tc.augment else "none"


def shared_tokens(shards, exp: ExperimentConfig, backbone, use_gpu: bool, slots: int,
                  compute: bool = True):
    """With ``train.cache_trunk``: the frozen-trunk token folder every fold reads (computed
    once, reused by later runs on the same shards, trunk and views); else, or when there is
    none and ``compute`` is off, None."""
    if not exp.train.cache_trunk:
        return None
    from .tokens import ensure_trunk_tokens

    return ensure_trunk_tokens(shards, exp, backbone, use_gpu, slots, compute)


def tokens_place(shards, exp: ExperimentConfig) -> str:
    """Where the token pass runs: "here" (or nothing to make), or "ray"."""
    if not exp.train.cache_trunk:
        return "here"
    from .tokens import pass_place

    return pass_place(shards, exp)


register(Method("mer", "the paper's model: LoRA DinoV2 + SFA + DGAT + dynamic fusion",
                _mer_fit, _mer_parameters, uses_backbone=True, augmentation=augmentation,
                shared_inputs=shared_tokens, shared_place=tokens_place))
