"""Configuration: every setting of a run, typed, documented, validated and hashable, and the
machinery around it, in one place.

``ExperimentConfig`` has four sections: ``data`` (what the clips look like: T, S, alignment),
``model``, ``loss`` and ``train``. Every field carries its help text (``described``); every
**(ours)** choice of docs/method.md is a field. ``from_dict`` builds any section from plain values
(YAML, ``--set section.field=value``, JSON records), types coerced, unknown keys refused;
``config_fields`` lists every field with its default and help (``mer-ray config``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

# The timm DinoV2 backbones a run may use: name -> (blocks, embedding width).
BACKBONES = {"vit_small_patch14_dinov2": (12, 384), "vit_base_patch14_dinov2": (12, 768)}
FINETUNE = ("lora", "full", "frozen")
FRAME_FEATURES = ("cls", "mean_patch", "cls_mean", "grid")
CLASS_WEIGHTS = ("none", "inverse_freq")


def described(default, help: str):
    """A dataclass field whose help text travels with it."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def validate(owner: str, checks: list[tuple[bool, str]]) -> None:
    """Raise ValueError naming ``owner`` and the first failed check's message."""
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"{owner}: {msg}")


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce(owner: str, name: str, kind: str, value: Any) -> Any:
    """``value`` as the field's annotated type (``int``, ``float``, ``bool``, ``str``,
    ``dict`` and unions of them with ``None``): YAML and ``--set`` give strings and ints where
    floats are meant (``1e-4`` without a dot is a string in YAML 1.1), JSON gives floats where
    ints are."""
    kinds = [k.strip() for k in kind.split("|")]

    def fail():
        raise ValueError(f"{owner}.{name}: expected {kind}, got {value!r}")

    if value is None:
        return None if "None" in kinds or "dict" in kinds else fail()
    if "bool" in kinds:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE and \
                (kinds == ["bool"] or value.strip().lower() in ("true", "false")):
            return value.strip().lower() in _TRUE
    for k in kinds:
        try:
            if k == "int" and not isinstance(value, bool):
                number = float(value)
                if number.is_integer():
                    return int(number)
            elif k == "float" and not isinstance(value, bool):
                return float(value)
            elif k == "str" and isinstance(value, (str, int, float)) and \
                    not isinstance(value, bool):
                return str(value)
            elif k == "dict" and isinstance(value, dict):
                return dict(value)
        except (TypeError, ValueError):
            continue
    return fail()


def from_dict(cls, data: dict[str, Any] | None):
    """A config section from plain values: types coerced, unknown keys refused with the
    nearest known names (a typo must not pass silently)."""
    data = dict(data or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        hints = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
        said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                         for u, h in hints.items())
        raise ValueError(f"{cls.__name__}: unknown field(s) {said}; `mer-ray config` lists "
                         f"every field")
    return cls(**{k: _coerce(cls.__name__, k, str(known[k].type), v) for k, v in data.items()})


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: configuration file not found") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``section.field=value`` -> (key, value parsed as YAML: 16, 1e-4, true, {a: 1})."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or "." not in key:
        raise ValueError(f"--set {item!r}: expected section.field=value, e.g. "
                         f"model.lora_rank=16")
    return key.strip(), yaml.safe_load(value)


@dataclass(frozen=True)
class DataConfig:
    frames: int = described(8, "T: frames sampled uniformly over onset..offset (ours)")
    size: int = described(224, "S: aligned frame size in pixels, a multiple of the ViT patch 14")
    eye_y: float = described(0.38, "height of the eye line in the aligned frame, fraction of S")
    inter_ocular: float = described(0.32, "distance between the eye centres, fraction of S")
    flow: str | None = described(
        None, "optical flow from each clip's onset to its apex frame, stored with the shards: "
              "tvl1 | farneback | dis (the flow-based methods need it); none: no flow")
    registration: str = described(
        "onset", "how the apex frame is placed on the onset frame for the flow: onset (the "
                 "onset's alignment for both: the field's common crop) | rigid (a "
                 "least-squares rigid fit of the apex's eye corners and nose bridge onto the "
                 "onset's) | separate (each frame by its own eye centres). onset was chosen by "
                 "measurement (benchmarks/registration.py: on synthetic clips the landmark "
                 "fits move with the expression and add more error than the head motion they "
                 "remove)")

    def __post_init__(self):
        validate("DataConfig", [
            (self.flow in (None, "tvl1", "farneback", "dis"),
             f"flow must be tvl1, farneback or dis (got {self.flow!r})"),
            (self.registration in ("separate", "onset", "rigid"),
             f"registration must be separate, onset or rigid (got {self.registration!r})"),
            (self.frames >= 1, f"frames must be at least 1 (got {self.frames})"),
            (self.size >= 14 and self.size % 14 == 0,
             f"size must be a positive multiple of 14, the ViT patch size (got {self.size})"),
            (0 < self.eye_y < 1 and 0 < self.inter_ocular < 1,
             "eye_y and inter_ocular are fractions of the frame"),
        ])


@dataclass(frozen=True)
class ModelConfig:
    method: str = described(
        "mer", "the method trained per fold: mer (the paper's model: every other model field "
               "is its), lbptop_svm, ststnet, offapexnet; 'mer-ray compare --help' lists the "
               "registry")
    backbone: str = described("vit_small_patch14_dinov2", "timm DinoV2 ViT; vit_base for paper scale")
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
    frame_feature: str = described("cls_mean", "cls | mean_patch | cls_mean (ours, docs/method.md, section 2) | "
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
            (self.backbone in BACKBONES, f"backbone must be one of {tuple(BACKBONES)}"),
            (self.finetune in FINETUNE, f"finetune must be one of {FINETUNE}"),
            (0 <= self.lora_blocks <= 12, "lora_blocks must be between 0 and 12"),
            (self.lora_rank > 0, f"lora_rank must be > 0 (got {self.lora_rank})"),
            (self.lora_alpha > 0, "lora_alpha must be > 0"),
            (0.0 <= self.lora_dropout < 1.0, "lora_dropout must be in [0, 1)"),
            (self.random_init_layerscale > 0, "random_init_layerscale must be > 0"),
            (self.frame_feature in FRAME_FEATURES, f"frame_feature must be one of {FRAME_FEATURES}"),
            (self.frame_grid >= 1, f"frame_grid must be >= 1 (got {self.frame_grid})"),
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
    class_weights: str = described("none", "none | inverse_freq: class-weighted CE (cd6me: "
                                           "each AU's positives weighted by negatives/positives)")
    koleo_eps: float = described(1e-8, "epsilon inside KoLeo's log")

    def __post_init__(self):
        validate("LossConfig", [
            (self.lambda1 >= 0 and self.lambda2 >= 0, "lambda1 and lambda2 must be >= 0"),
            (self.class_weights in CLASS_WEIGHTS, f"class_weights must be one of {CLASS_WEIGHTS}"),
        ])


@dataclass(frozen=True)
class TrainConfig:
    lr: float = described(1e-4, "Adam learning rate (ours)")
    batch_size: int = described(16, "clips per step")
    max_epochs: int = described(50, "upper bound on epochs")
    patience: int = described(10, "early stopping: epochs without a better validation UF1")
    val_subjects: int = described(2, "whole subjects drawn from the training subjects for validation")
    seed: int = described(0, "seeds model init, validation draw, shuffling and augmentation")
    augment: bool = described(True, "flip + mild affine on training clips (same draw for all frames)")
    flip_p: float = described(0.5, "horizontal flip probability")
    rotate_deg: float = described(5.0, "rotation range +- degrees (ours)")
    scale_min: float = described(0.95, "smallest scale (ours)")
    scale_max: float = described(1.05, "largest scale (ours)")
    translate: float = described(0.03, "translation range +- fraction of the size (ours)")
    cache_trunk: bool = described(False, "train from cached frozen-trunk tokens (no pixel augmentation "
                                  "beyond cached_views)")
    cached_views: int = described(
        1, "(ours) with cache_trunk: trunk tokens of this many views of every clip, computed once "
           "with the other tokens: the clip as aligned and cached_views - 1 draws of the training "
           "augmentation (flip + affine, one draw per clip and view, seeded by seed, clip and "
           "view). Each epoch a training clip is seen through one of its views, drawn by seed "
           "and epoch; validation and test clips only as aligned. 1: no augmentation")
    shuffle_labels: bool = described(False, "control run: permute training/validation labels per fold")
    use_gpu: str | bool = described("auto", "auto | true | false: folds train on GPUs (auto: when "
                                     "the cluster has them)")
    gpus_per_fold: float = described(1.0, "share of a GPU each fold worker holds (0.25: four folds "
                                   "share one GPU)")
    cpus_per_fold: int = described(1, "CPUs for each fold worker (also its torch threads)")
    fold_resources: dict = described(None, "extra custom resources per fold worker, e.g. {fold_slot: 1}")
    max_failures: int = described(2, "retries of a failed fold worker, from its last checkpoint")
    precision: str = described("auto", "fp32 | bf16 | auto: bf16 autocast for forward passes (auto: on "
                                "a GPU that supports it, fp32 elsewhere); losses and metrics "
                                "stay fp32")
    deterministic: bool = described(True, "deterministic algorithms only (torch, cuBLAS, cuDNN): "
                                   "the same run gives the same predictions on a GPU too")
    max_concurrent_folds: int = described(0, "folds training at once; 0: as many as resources allow")
    selection: str = described(
        "validation", "what picks each fold's epoch: validation (honest: validation subjects' "
                      "UF1, early stopping by patience) | test (LEAKY, the common protocol "
                      "reproduced to show its effect: every epoch up to max_epochs is scored on "
                      "the test subject and the best kept; such runs are marked leaky everywhere)")

    def __post_init__(self):
        checks = [
            (self.lr > 0, "lr must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.max_epochs >= 1, "max_epochs must be >= 1"),
            (self.patience >= 1, "patience must be >= 1"),
            (self.val_subjects >= 0, "val_subjects must be >= 0"),
            (0 <= self.flip_p <= 1, "flip_p must be in [0, 1]"),
            (0 < self.scale_min <= self.scale_max, "need 0 < scale_min <= scale_max"),
            (self.use_gpu in ("auto", True, False), "use_gpu must be auto, true or false"),
            (self.cpus_per_fold >= 1, "cpus_per_fold must be >= 1"),
            (self.cached_views >= 1, f"cached_views must be >= 1 (got {self.cached_views})"),
            (self.cached_views == 1 or (self.cache_trunk and self.augment),
             "cached_views > 1 needs cache_trunk and augment (the views are draws of the "
             "training augmentation, cached with the trunk tokens)"),
            (self.precision in ("fp32", "bf16", "auto"), "precision must be fp32, bf16 or auto"),
            (0 < self.gpus_per_fold <= 1 or float(self.gpus_per_fold).is_integer(),
             "gpus_per_fold must be a fraction in (0, 1] or a whole number"),
            (self.selection in ("validation", "test"), "selection must be validation or test"),
        ]
        validate("TrainConfig", checks)

    @property
    def views_id(self) -> str | None:
        """What the cached augmented views depend on (``VIEW_FIELDS``), as a short hash (None:
        no views)."""
        if self.cached_views <= 1:
            return None
        spec = [getattr(self, name) for name in VIEW_FIELDS]
        return f"v{self.cached_views}-" + hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:8]


# The training settings the cached augmented views are drawn with (``TrainConfig.views_id``).
VIEW_FIELDS = ("cached_views", "seed", "flip_p", "rotate_deg", "scale_min", "scale_max",
               "translate")
# The model settings that decide the frozen trunk's weights (with ``train.seed``: a random
# backbone's initialisation); the frame settings (``data``) decide its input.
TRUNK_FIELDS = ("backbone", "pretrained", "backbone_weights", "random_init_layerscale",
                "finetune", "lora_blocks")
SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}


def token_fields() -> set[str]:
    """Every ``section.field`` that changes the trunk tokens or their cached views a fold
    reads: a search over one of them cannot share the base configuration's token folder."""
    return ({f"data.{f.name}" for f in fields(DataConfig)}
            | {f"model.{name}" for name in TRUNK_FIELDS}
            | {f"train.{name}" for name in VIEW_FIELDS}
            | {"train.cache_trunk", "train.augment"})


@dataclass(frozen=True)
class ExperimentConfig:
    """A run's settings. The frames' settings (T, S, alignment) live in ``data`` only: the
    model reads its input size from there."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        side = self.data.size // 14
        validate("ExperimentConfig", [
            (self.model.frame_grid <= side,
             f"model.frame_grid must be at most the patches per side of data.size "
             f"({side}; got {self.model.frame_grid})")])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExperimentConfig:
        data = {k: dict(v or {}) for k, v in (data or {}).items()}
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ValueError(f"ExperimentConfig: unknown section(s) {unknown}; use "
                             f"{', '.join(SECTIONS)}")
        return cls(**{name: from_dict(kind, data.get(name)) for name, kind in SECTIONS.items()})

    def hash(self) -> str:
        """A stable 12-hex digest of the whole configuration."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def with_values(self, values: dict[str, Any]) -> ExperimentConfig:
        """Set ``{"section.field": value}``; numpy scalars become Python numbers."""
        data = self.to_dict()
        for key, value in values.items():
            section, _, name = key.partition(".")
            if section not in data:
                raise ValueError(f"{key!r}: unknown section {section!r}; use "
                                 f"{', '.join(SECTIONS)}")
            data[section][name] = value.item() if hasattr(value, "item") else value
        return ExperimentConfig.from_dict(data)

    def with_overrides(self, overrides: list[str]) -> ExperimentConfig:
        """Apply ``section.field=value`` strings; values are parsed as YAML (16, 1e-4, true)."""
        return self.with_values(dict(parse_override(o) for o in overrides))


def load_experiment(path: str | Path | None = None,
                    overrides: list[str] | None = None) -> ExperimentConfig:
    cfg = ExperimentConfig.from_dict(load_yaml(path)) if path else ExperimentConfig()
    return cfg.with_overrides(overrides or [])


def config_fields() -> list[dict[str, Any]]:
    """Every field a configuration has: key (section.field), type, default and help."""
    rows = []
    for section, kind in SECTIONS.items():
        for f in fields(kind):
            default = f.default if f.default is not MISSING else f.default_factory()
            rows.append({"key": f"{section}.{f.name}", "type": str(f.type), "default": default,
                         "help": f.metadata.get("help", "")})
    return rows
