"""The paper's model as a method: LoRA DinoV2 with SFA and DGAT and the dynamic-convolution
fusion (``model/``), its fold (``fit.py``: network, inputs, loss, trained by the platform's
fold loop), its inputs (``inputs.py``), its shared frozen-trunk tokens (``tokens.py``) and its
training augmentation (``augment.py``)."""

from __future__ import annotations

from ...config import ExperimentConfig
from ..registry import Method, register


class MER(Method):
    """The paper's model: every model field of the configuration is its."""

    name = "mer"
    summary = "the paper's model: LoRA DinoV2 + SFA + DGAT + dynamic fusion"
    uses_backbone = True

    def fit(self, job, device, resume=None, on_epoch=None, cache=None, every_epoch=None):
        from .fit import fit_fold

        return fit_fold(job, device, resume, on_epoch, cache, every_epoch=every_epoch)

    def parameters(self, exp: ExperimentConfig, classes: int) -> int:
        from ...model.encoder import RANDOM
        from ...model.network import MERNet

        return MERNet(exp.model, classes, exp.data.size, RANDOM).parameter_counts()[1]

    def augmentation(self, exp: ExperimentConfig) -> str:
        tc = exp.train
        if tc.cache_trunk and tc.cached_views > 1:
            return (f"cached views: each epoch a training clip is shown as aligned or as one "
                    f"of its {tc.cached_views - 1} augmented view(s) (flip + affine, drawn "
                    f"once per clip and view, encoded with the trunk tokens)")
        if tc.cache_trunk:
            return "none: trained from cached frozen-trunk tokens"
        return "flip + affine on training clips, drawn every epoch" if tc.augment else "none"

    def shared_inputs(self, shards, exp: ExperimentConfig, backbone, use_gpu: bool,
                      slots: int, compute: bool = True):
        """With ``train.cache_trunk``: the frozen-trunk token folder every fold reads
        (computed once, reused by later runs on the same shards, trunk and views)."""
        if not exp.train.cache_trunk:
            return None
        from .tokens import ensure_trunk_tokens

        return ensure_trunk_tokens(shards, exp, backbone, use_gpu, slots, compute)

    def shared_place(self, shards, exp: ExperimentConfig) -> str:
        if not exp.train.cache_trunk:
            return "here"
        from .tokens import pass_place

        return pass_place(shards, exp)


register(MER())
