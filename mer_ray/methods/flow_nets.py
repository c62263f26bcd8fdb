"""What the flow-based CNNs share: their inputs (the shards' onset -> apex flow and strain maps,
resized to the network's input size and normalised as the authors fed them) and their fit (the
fold loop of ``fitting/loop.py`` with a plain cross-entropy).

Input normalisation, as the authors did it: STSTNet's published code
(christy1206/STSTNet, ``main.py``) reads each clip's u, v and strain from 8-bit images in a
folder named ``norm_u_v_os``: every map stretched over the 0-255 range by its own minimum and
maximum (per clip and channel); MEB stores the same per-clip, per-channel min-max stretch as
[0, 1] floats (``tools/extract_optical_flow.py``) and feeds it to both STSTNet and OFF-ApexNet.
Here each map is resized to the network's input (area averaging), then stretched to [0, 1] by
its own minimum and maximum (a constant map becomes 0). Two deviations, each stated: the
authors' values are 0-255 (ours 1/255 of theirs: the first convolution absorbs a constant
scale; MEB uses [0, 1] too), and they are 8-bit (ours float32: no rounding).

No augmentation (neither paper augments). Every random draw (the batch order, dropout) comes
from the seed and the epoch, so a resumed fold trains as an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..fitting.loop import (
    FoldParts,
    fold_readers,
    seeded_generator,
    set_determinism,
    train_fold,
)
from .registry import Method

NO_AUGMENTATION = ("none: the onset -> apex flow maps of the aligned clip, resized and "
                   "min-max normalised per clip and channel, as the method's authors fed them")


def resized(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S) maps at ``size`` x ``size`` (area averaging), float32."""
    import cv2

    if not len(maps):
        return np.zeros((0, size, size), np.float32)
    return np.stack([cv2.resize(m.astype(np.float32), (size, size),
                                interpolation=cv2.INTER_AREA) for m in maps])


def minmax(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) -> each map stretched to [0, 1] by its own minimum and maximum (a constant
    map: 0)."""
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1.0), 0.0) \
        .astype(np.float32)


class FlowInputs:
    """A fold's splits as (N, C, size, size) float tensors of the chosen flow channels
    (resized, min-max normalised per clip and channel), held in memory (they are small),
    batched like the paper model's inputs."""

    def __init__(self, readers: dict, channels: tuple[str, ...], size: int, batch_size: int,
                 seed: int, device, label_override=None):
        self.channels, self.size, self.batch_size = channels, size, batch_size
        self.seed, self.device = seed, device
        self.override = label_override or {}
        self.cached = {}
        for name, reader in readers.items():
            self.add(name, reader)

    def __contains__(self, name: str) -> bool:
        return name in self.cached

    def add(self, name: str, reader) -> None:
        if name == "target":
            raise ValueError("the flow methods have no domain adaptation (no target clips)")
        cols = reader.columns if hasattr(reader, "columns") else None
        if cols is None:  # a reader of batches (e.g. one that withholds labels)
            cols = {}
            for b in reader.iter_batches(batch_size=10**9):
                cols = {k: v for k, v in b.items()}
        keys = [f"{s}/{c}" for s, c in zip(cols["subject"], cols["clip"])]
        labels = [self.override.get(k, int(y)) for k, y in zip(keys, cols["label_id"])]
        x = np.stack([minmax(resized(np.asarray(cols[c]), self.size))
                      for c in self.channels], axis=1)
        self.cached[name] = (keys, torch.tensor(labels, dtype=torch.long),
                             torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))

    def batches(self, name: str, epoch: int | None = None):
        """(inputs, labels, clip keys); shuffled by (seed, epoch) when ``epoch`` is given, and
        the process's generator seeded by them too (dropout's draws)."""
        keys, labels, x = self.cached[name]
        order = torch.arange(len(keys))
        if epoch is not None:
            order = torch.randperm(len(keys), generator=seeded_generator(self.seed, epoch, 1))
            torch.manual_seed(seeded_generator(self.seed, epoch, 5).initial_seed())
        for idx in order.split(self.batch_size):
            yield ({"flow": x[idx].to(self.device)}, labels[idx].to(self.device),
                   [keys[i] for i in idx])

    def target_inputs(self, epoch: int):
        return iter(())


class CrossEntropy(nn.Module):
    """Plain cross-entropy, with the loss parts the fold loop records (no KoLeo, no
    consistency term)."""

    def forward(self, out: dict, y: torch.Tensor, target=None) -> dict:
        ce = nn.functional.cross_entropy(out["logits"], y)
        zero = ce.new_zeros(())
        return {"total": ce, "ce": ce, "koleo": zero, "cons": zero}


class FlowCNN(Method):
    """A flow CNN as a method: ``network(classes)`` (built seeded) on the shards' flow
    ``channels`` at ``size`` x ``size``, trained by the platform's fold loop with a plain
    cross-entropy, without augmentation."""

    needs_flow = True
    channels: tuple[str, ...] = ()
    size: int = 28

    def network(self, classes: int) -> nn.Module:
        raise NotImplementedError

    @property
    def columns(self) -> tuple[str, ...]:
        return ("subject", "clip", "label_id", *sorted(set(self.channels)))

    def fit(self, job, device, resume=None, on_epoch=None, cache=None, every_epoch=None):
        from ..model.build import seed_everything

        tc = job.experiment.train
        set_determinism(tc.deterministic)
        seed_everything(tc.seed)
        net = self.network(len(job.class_names)).to(device)
        data = FlowInputs(fold_readers(job), self.channels, self.size, tc.batch_size, tc.seed,
                          device, job.label_override)
        return train_fold(job, device, FoldParts(net, data, CrossEntropy(), cache_trunk=False,
                                                 augmented=False), resume, on_epoch, every_epoch)

    def parameters(self, exp, classes: int) -> int:
        return trainable(self.network(classes))

    def augmentation(self, exp) -> str:
        return NO_AUGMENTATION


def trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
