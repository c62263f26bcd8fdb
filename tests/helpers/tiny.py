"""The tiny experiment configuration the Ray tests train with: one place for all of them."""

from pathlib import Path

import yaml

# S=28 frames, narrow heads, one validation subject, one epoch: seconds per fold on a CPU.
TINY = [
    "data.frames=4", "data.size=28", "model.pretrained=false", "model.sfa_dim=32", "model.dgat_dim=32",
    "model.fusion_dim=32", "train.max_epochs=1", "train.val_subjects=1", "train.batch_size=4",
]

# The fault tests: a few short epochs with the trunk cache and a checkpoint per epoch; the tests
# hold the fold at its first committed checkpoint (``hold``) while they kill something.
FAULT = ["train.max_epochs=3", "train.patience=3", "train.cache_trunk=true"]


def write_config(path: Path, extra: tuple[str, ...] = ()) -> Path:
    """TINY plus ``extra`` overrides as an experiment YAML (for the scripts' --config)."""
    data: dict = {}
    for item in TINY + list(extra):
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(data))
    return path
