"""A method that is a network: say what it reads and what it is, and the platform trains it.

``NetworkMethod`` is what a researcher writes (``mer-ray new-method NAME`` writes a working
example): ``network(classes)``, a ``torch.nn.Module`` whose ``forward`` takes the input tensor
(keyword ``input_name``) and returns ``{"logits": (B, classes)}``; ``inputs(columns)``, which turns
a split's shard columns (``columns``: the frames, the flow maps, ...) into one array per clip;
optionally ``loss(logits, labels)`` (default: cross-entropy; binary cross-entropy per action
unit under the multi-label CD6ME protocol, whose labels arrive as 0/1 floats) and a ``recipe`` of training
settings. Everything else is the platform's: the fold's splits read from the shards, seeded batch
order, the epochs and early stopping on the validation subjects (or the leaky test selection,
marked, when asked for), the records, checkpoints for resuming, and the test predictions
(``fitting/loop.py``). The flow CNNs (``flow_nets.py``) are network methods.
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
from ..fitting.task import class_weights
from ..model.losses import default_loss
from .registry import Method


class ArrayInputs:
    """A fold's splits as float tensors made by ``to_array(columns)`` (held in memory), batched
    as the fold loop reads them: ``({input_name: x}, labels, clip keys)``."""

    def __init__(self, readers: dict, to_array, input_name: str, batch_size: int, seed: int,
                 device, label_override=None):
        self.to_array, self.input_name = to_array, input_name
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.override = label_override or {}
        self.cached = {}
        for name, reader in readers.items():
            self.add(name, reader)

    def __contains__(self, name: str) -> bool:
        return name in self.cached

    def add(self, name: str, reader) -> None:
        if name == "target":
            raise ValueError("this method has no domain adaptation (no target clips)")
        cols = reader.columns if hasattr(reader, "columns") else None
        if cols is None:  # a reader of batches (e.g. one that withholds labels)
            cols = {}
            for b in reader.iter_batches(batch_size=10**9):
                cols = {k: v for k, v in b.items()}
        keys = [f"{s}/{c}" for s, c in zip(cols["subject"], cols["clip"])]
        labels = [self.override.get(k, int(y)) for k, y in zip(keys, cols["label_id"])]
        x = np.asarray(self.to_array(cols), dtype=np.float32)
        if len(x) != len(keys):
            raise ValueError(f"inputs() gave {len(x)} arrays for {len(keys)} clips")
        self.cached[name] = (keys, torch.tensor(labels, dtype=torch.long),
                             torch.from_numpy(np.ascontiguousarray(x)))

    def batches(self, name: str, epoch: int | None = None):
        """(inputs, labels, clip keys); shuffled by (seed, epoch) when ``epoch`` is given, and
        the process's generator seeded by them too (dropout's draws)."""
        keys, labels, x = self.cached[name]
        order = torch.arange(len(keys))
        if epoch is not None:
            order = torch.randperm(len(keys), generator=seeded_generator(self.seed, epoch, 1))
            torch.manual_seed(seeded_generator(self.seed, epoch, 5).initial_seed())
        for idx in order.split(self.batch_size):
            yield ({self.input_name: x[idx].to(self.device)}, labels[idx].to(self.device),
                   [keys[i] for i in idx])

    def target_inputs(self, epoch: int):
        return iter(())


class _Loss(nn.Module):
    """The method's loss with the parts the fold loop records (no KoLeo, no consistency);
    the default loss takes ``loss.class_weights`` (``weight``), a method's own takes none."""

    def __init__(self, loss, weight: torch.Tensor | None = None):
        super().__init__()
        self.loss, self.weight = loss, weight

    def forward(self, out: dict, y: torch.Tensor, target=None) -> dict:
        total = self.loss(out["logits"], y) if self.weight is None \
            else default_loss(out["logits"], y, self.weight)
        zero = total.new_zeros(())
        return {"total": total, "ce": total, "koleo": zero, "cons": zero}


class NetworkMethod(Method):
    """A network trained by the platform's fold loop (see the module's docstring)."""

    columns: tuple[str, ...] = ("subject", "clip", "label_id", "frames")
    input_name: str = "x"

    def network(self, classes: int) -> nn.Module:
        raise NotImplementedError

    def inputs(self, columns: dict) -> np.ndarray:
        """One array per clip, (N, ...), from a split's shard columns."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on class indices; under a multi-label protocol (CD6ME) ``labels`` are
        (B, AUs) 0/1 floats and the loss is binary cross-entropy per AU."""
        return default_loss(logits, labels)

    def fit(self, job, device, resume=None, on_epoch=None, cache=None, every_epoch=None):
        from ..model.build import seed_everything

        tc = job.experiment.train
        set_determinism(tc.deterministic)
        seed_everything(tc.seed)
        net = self.network(len(job.class_names)).to(device)
        data = ArrayInputs(fold_readers(job), self.inputs, self.input_name, tc.batch_size,
                           tc.seed, device, job.label_override)
        own_loss = type(self).loss is not NetworkMethod.loss
        weight = None if own_loss else class_weights(job, device)
        return train_fold(job, device, FoldParts(net, data, _Loss(self.loss, weight),
                                                 cache_trunk=False, augmented=False),
                          resume, on_epoch, every_epoch)

    def parameters(self, exp, classes: int) -> int:
        return trainable(self.network(classes))


def trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
