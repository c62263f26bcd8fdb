"""Model and loss configuration: typed dataclasses, validated where they are built.

Every **(ours)** choice of METHOD.md is a field here, with its help text in ``field(metadata=...)``.
``VARIANTS`` names the ablation rows; tests enumerate it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

BACKBONES = ("vit_small_patch14_dinov2", "vit_base_patch14_dinov2")
FINETUNE = ("lora", "full", "frozen")
FRAME_FEATURES = ("cls", "mean_patch", "cls_mean", "grid")
CLASS_WEIGHTS = ("none", "inverse_freq")


def described(default, help: str):
    """A dataclass field whose help text travels with it."""
    return field(default=default, metadata={"help": help})


def validate(owner: str, checks: list[tuple[bool, str]]) -> None:
    """Raise ValueError naming ``owner`` and the first failed check's message."""
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"{owner}: {msg}")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = described("vit_small_patch14_dinov2", "timm DinoV2 ViT; vit_base for paper scale")
    image_size: int = described(224, "S: aligned frame size, a multiple of the patch size 14")
    pretrained: bool = described(True, "ask timm for DinoV2's published weights (needs a hub or cache); "
                                "random init with a warning when they cannot be had")
    backbone_weights: str | None = described(None, "local safetensors / torch state dict, loaded strictly")
    require_pretrained: bool = described(
        False, "stop with a message instead of training a randomly initialised backbone when "
               "no DinoV2 weights can be had (paper-scale runs)")
    random_init_layerscale: float = described(
        1.0, "LayerScale gamma of a randomly initialised backbone (ours). timm's 1e-5 scales every "
             "block's output down so far that a random network is the patch embedding and LoRA "
             "cannot move it; ignored when weights are loaded")
    finetune: str = described("lora", "lora | full (whole backbone trains) | frozen (none of it)")
    lora_blocks: int = described(2, "last blocks that get LoRA on Q and V; earlier ones stay frozen")
    lora_rank: int = described(8, "r (ours)")
    lora_alpha: float = described(16.0, "alpha; LoRA scale s = alpha / r (ours)")
    lora_dropout: float = described(0.0, "dropout on the LoRA branch input")
    frame_feature: str = described("cls_mean", "cls | mean_patch | cls_mean (ours, METHOD.md section 2) | "
                                   "grid (ours, off by default: patch tokens average-pooled to "
                                   "frame_grid x frame_grid cells, concatenated; keeps where the "
                                   "face moved)")
    frame_grid: int = described(2, "cells per side for frame_feature=grid (ours)")
    onset_relative: bool = described(
        False, "(ours, off in the paper's method) feed SFA/DGAT each frame's feature minus the "
               "first sampled frame's (the onset), standardised per dimension by a BatchNorm "
               "without affine whose statistics come from training batches only")
    use_sfa: bool = described(True, "spatial frequency adaptation branch")
    use_dgat: bool = described(True, "dynamic graph attention branch")
    use_freq_guidance: bool = described(True, "psi = 1 - |w_i - w_j| term in DGAT attention")
    use_lstm: bool = described(True, "LSTM after the graph attention (off: max over time of its output)")
    sfa_rho: float = described(0.25, "low-pass radius in normalised frequency coordinates (ours)")
    sfa_experts: int = described(4, "K: SFA experts (ours)")
    sfa_dim: int = described(256, "d_s: SFA output width")
    dgat_heads: int = described(4, "H: attention heads")
    dgat_dim: int = described(256, "d_t: DGAT width")
    lambda_f_init: float = described(1.0, "initial value of the learnable frequency-guidance scale")
    fusion_kernels: int = described(4, "Kc: dynamic-convolution kernels")
    fusion_dim: int = described(256, "d_f: fused feature width")
    eps: float = described(1e-6, "numerical floor in the SFA frequency weight")

    def __post_init__(self):
        checks = [
            (self.backbone in BACKBONES, f"backbone must be one of {BACKBONES}"),
            (self.image_size > 0 and self.image_size % 14 == 0,
             f"image_size must be a positive multiple of 14 (got {self.image_size})"),
            (self.finetune in FINETUNE, f"finetune must be one of {FINETUNE}"),
            (0 <= self.lora_blocks <= 12, "lora_blocks must be between 0 and 12"),
            (self.lora_rank > 0, f"lora_rank must be > 0 (got {self.lora_rank})"),
            (self.lora_alpha > 0, "lora_alpha must be > 0"),
            (0.0 <= self.lora_dropout < 1.0, "lora_dropout must be in [0, 1)"),
            (self.random_init_layerscale > 0, "random_init_layerscale must be > 0"),
            (self.frame_feature in FRAME_FEATURES, f"frame_feature must be one of {FRAME_FEATURES}"),
            (1 <= self.frame_grid <= self.image_size // 14,
             f"frame_grid must be between 1 and the patches per side ({self.image_size // 14})"),
            (0.0 < self.sfa_rho < 1.0, "sfa_rho must be in (0, 1)"),
            (self.sfa_experts >= 1, f"sfa_experts (K) must be >= 1 (got {self.sfa_experts})"),
            (self.dgat_heads >= 1 and self.dgat_dim % self.dgat_heads == 0,
             "dgat_dim must be a positive multiple of dgat_heads"),
            (min(self.sfa_dim, self.dgat_dim, self.fusion_dim) > 0, "widths must be > 0"),
            (self.fusion_kernels >= 1, "fusion_kernels (Kc) must be >= 1"),
        ]
        validate("ModelConfig", checks)

    @property
    def uses_lora(self) -> bool:
        return self.finetune == "lora" and self.lora_blocks > 0

    @property
    def trunk_frozen(self) -> bool:
        """Whether the patch embedding and the blocks before the LoRA blocks never change."""
        return self.finetune != "full"


@dataclass(frozen=True)
class LossConfig:
    lambda1: float = described(0.1, "weight of the KoLeo regulariser (ours)")
    lambda2: float = described(0.5, "weight of the SFA/DGAT consistency term (ours)")
    class_weights: str = described("none", "none | inverse_freq: class-weighted cross-entropy")
    koleo_eps: float = described(1e-8, "epsilon inside KoLeo's log")

    def __post_init__(self):
        validate("LossConfig", [
            (self.lambda1 >= 0 and self.lambda2 >= 0, "lambda1 and lambda2 must be >= 0"),
            (self.class_weights in CLASS_WEIGHTS, f"class_weights must be one of {CLASS_WEIGHTS}"),
        ])


def from_dict(cls, data: dict[str, Any] | None):
    """Build a config dataclass from a dict, refusing unknown keys (a typo must not pass)."""
    data = dict(data or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
    for f in fields(cls):
        # YAML 1.1 reads 1e-4 (no dot) as a string; a float field takes it as the number it is.
        if f.name in data and f.type == "float" and isinstance(data[f.name], (str, int)) \
                and not isinstance(data[f.name], bool):
            try:
                data[f.name] = float(data[f.name])
            except ValueError:
                raise ValueError(f"{cls.__name__}.{f.name}: expected a number, got "
                                 f"{data[f.name]!r}") from None
    return cls(**data)


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


# The ablation rows. "baseline" is DinoV2 alone (frozen, no SFA, no DGAT).
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "baseline": {"finetune": "frozen", "use_sfa": False, "use_dgat": False},
    "lora_only": {"use_sfa": False, "use_dgat": False},
    "no_sfa": {"use_sfa": False},
    "no_dgat": {"use_dgat": False},
    "no_lstm": {"use_lstm": False},
    "full_finetune": {"finetune": "full"},
}


def variant(name: str, **overrides) -> ModelConfig:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return replace(ModelConfig(**VARIANTS[name]), **overrides)

