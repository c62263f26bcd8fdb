"""Experiment configuration: model + loss + training, one hashable record of what produced a run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..model.config import LossConfig, ModelConfig, from_dict, load_yaml, validate
from ..model.config import described as _f


@dataclass(frozen=True)
class TrainConfig:
    lr: float = _f(1e-4, "Adam learning rate (ours)")
    batch_size: int = _f(16, "clips per step")
    max_epochs: int = _f(50, "upper bound on epochs")
    patience: int = _f(10, "early stopping: epochs without a better validation UF1")
    val_subjects: int = _f(2, "whole subjects drawn from the training subjects for validation")
    seed: int = _f(0, "seeds model init, validation draw, shuffling and augmentation")
    augment: bool = _f(True, "flip + mild affine on training clips (same draw for all frames)")
    flip_p: float = _f(0.5, "horizontal flip probability")
    rotate_deg: float = _f(5.0, "rotation range +- degrees (ours)")
    scale_min: float = _f(0.95, "smallest scale (ours)")
    scale_max: float = _f(1.05, "largest scale (ours)")
    translate: float = _f(0.03, "translation range +- fraction of the size (ours)")
    cache_trunk: bool = _f(False, "train from cached frozen-trunk tokens (no pixel augmentation)")
    shuffle_labels: bool = _f(False, "control run: permute training/validation labels per fold")
    use_gpu: str | bool = _f("auto", "auto | true | false: folds train on GPUs (auto: when "
                                     "the cluster has them)")
    gpus_per_fold: float = _f(1.0, "share of a GPU each fold worker holds (0.25: four folds "
                                   "share one GPU)")
    cpus_per_fold: int = _f(1, "CPUs for each fold worker (also its torch threads)")
    fold_resources: dict = _f(None, "extra custom resources per fold worker, e.g. {fold_slot: 1}")
    max_failures: int = _f(2, "retries of a failed fold worker, from its last checkpoint")
    precision: str = _f("auto", "fp32 | bf16 | auto: bf16 autocast for forward passes (auto: on "
                                "a GPU that supports it, fp32 elsewhere); losses and metrics "
                                "stay fp32")
    deterministic: bool = _f(True, "deterministic algorithms only (torch, cuBLAS, cuDNN): "
                                   "the same run gives the same predictions on a GPU too")
    max_concurrent_folds: int = _f(0, "folds training at once; 0: as many as resources allow")

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
            (self.precision in ("fp32", "bf16", "auto"), "precision must be fp32, bf16 or auto"),
            (0 < self.gpus_per_fold <= 1 or float(self.gpus_per_fold).is_integer(),
             "gpus_per_fold must be a fraction in (0, 1] or a whole number"),
        ]
        validate("TrainConfig", checks)


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExperimentConfig:
        data = dict(data or {})
        unknown = sorted(set(data) - {"model", "loss", "train"})
        if unknown:
            raise ValueError(f"ExperimentConfig: unknown section(s) {unknown}; use model, loss, "
                             f"train")
        return cls(from_dict(ModelConfig, data.get("model")),
                   from_dict(LossConfig, data.get("loss")),
                   from_dict(TrainConfig, data.get("train")))

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
                raise ValueError(f"{key!r}: unknown section {section!r}; use model, loss, train")
            data[section][name] = value.item() if hasattr(value, "item") else value
        return ExperimentConfig.from_dict(data)

    def with_overrides(self, overrides: list[str]) -> ExperimentConfig:
        """Apply ``section.field=value`` strings; values are parsed as YAML (16, 1e-4, true)."""
        values = {}
        for item in overrides:
            if "=" not in item or "." not in item.split("=", 1)[0]:
                raise ValueError(f"override {item!r}: expected section.field=value, e.g. "
                                 f"model.lora_rank=16")
            key, value = item.split("=", 1)
            values[key] = yaml.safe_load(value)
        return self.with_values(values)

def load_experiment(path: str | Path | None = None,
                    overrides: list[str] | None = None) -> ExperimentConfig:
    cfg = ExperimentConfig.from_dict(load_yaml(path)) if path else ExperimentConfig()
    return cfg.with_overrides(overrides or [])
