"""``mer-ray new-method NAME``: a working method of the user's own, as a file to edit.

The file is a ``network.NetworkMethod``: a small CNN on the change between the onset frame and
the middle frame of each aligned clip. It trains as written (``--plugin FILE --set
model.method=NAME``, on Ray or with ``--local``), so a researcher starts from something that
runs and replaces the network and its inputs with their own.
"""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATE = '''"""{name}: a micro-expression method of your own for mer-ray.

Train it (a LOSO on Ray; --local: in this process):
    mer-ray train --plugin {file} --set model.method={name} --config experiments/configs/demo.yaml
Compare it with the registered methods on the same folds:
    mer-ray compare --plugin {file} --methods {name},lbptop_svm --config experiments/configs/demo.yaml

What you write: the shard columns it reads (``columns``), how a split's columns become one array
per clip (``inputs``), the network (``network``: its forward takes ``x`` and returns
{{"logits": ...}}), optionally a loss (``loss``) and training settings (``recipe``). What
mer-ray does: the folds, seeded batches, the epochs with early stopping on the validation
subjects, checkpoints, records and test predictions, the same for every method.
"""

import numpy as np
import torch
from torch import nn

from mer_ray.methods import Recipe, register
from mer_ray.methods.network import NetworkMethod


class {cls}Net(nn.Module):
    """Two small convolutions on a one-channel motion map, pooled, then a linear layer."""

    def __init__(self, classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.classifier = nn.Linear(16 * 4 * 4, classes)
        self.num_classes = classes

    def forward(self, x: torch.Tensor) -> dict:
        """x: (B, 1, S, S) -> {{"logits": (B, classes)}}."""
        return {{"logits": self.classifier(self.features(x).flatten(1))}}


class {cls}(NetworkMethod):
    name = "{name}"
    summary = "a small CNN on the change from the onset frame to the middle frame"
    # what each fold reads from the shards: "frames" is (N, T, S, S, 3) uint8, the aligned
    # clip; flow shards (mer-ray prepare --flow tvl1) also have flow_u, flow_v and strain
    columns = ("subject", "clip", "label_id", "frames")
    recipe = Recipe(lr=1e-3, max_epochs=8, patience=3)

    def inputs(self, columns: dict) -> np.ndarray:
        frames = np.asarray(columns["frames"], np.float32).mean(axis=-1) / 255.0  # grey
        change = frames[:, frames.shape[1] // 2] - frames[:, 0]  # middle minus onset
        scale = np.abs(change).reshape(len(change), -1).max(axis=1) + 1e-6
        return (change / scale[:, None, None])[:, None]  # (N, 1, S, S), per clip in [-1, 1]

    def network(self, classes: int) -> nn.Module:
        return {cls}Net(classes)

    def augmentation(self, exp) -> str:
        return "none"


register({cls}())
'''

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def write_template(name: str, out: Path | None = None) -> Path:
    """The method file for ``name`` (refused when the name is taken or not a plain lower-case
    identifier, or the file exists)."""
    from .registry import METHODS

    if not NAME.match(name):
        raise ValueError(f"{name!r}: a method's name is lower-case letters, digits and _, "
                         f"starting with a letter (it is what --set model.method= takes)")
    if name in METHODS:
        raise ValueError(f"{name!r} is a registered method already ({', '.join(METHODS)}); "
                         f"choose another name")
    out = Path(out) if out is not None else Path(f"{name}.py")
    if out.exists():
        raise FileExistsError(f"{out}: exists already; give another --out or remove it")
    cls = "".join(part.capitalize() for part in name.split("_")) or "Mine"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(TEMPLATE.format(name=name, cls=cls, file=out))
    return out
