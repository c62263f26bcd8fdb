"""What the fold loop trains for, decided once by the planner from the protocol: one class
per clip (softmax, cross-entropy, UF1 selects the epoch), or a set of action units per clip
(the CD6ME protocol: an independent sigmoid per AU, binary cross-entropy, the mean AU F1 selects
the epoch). Labels travel as integers either way: a class index, or a bit mask of AUs
(``data/aus.py``); ``targets`` turns them into what the loss reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..au_metrics import au_scores, decide
from ..metrics import scores


@dataclass(frozen=True)
class Task:
    names: tuple[str, ...]
    multilabel: bool = False

    @property
    def figure(self) -> str:
        """The selection figure's name in epoch rows: "uf1", or "au_f1" (mean AU F1)."""
        return "au_f1" if self.multilabel else "uf1"

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """What the loss reads: class indices, or (B, AUs) 0/1 floats from the masks."""
        if not self.multilabel:
            return labels
        shifts = torch.arange(len(self.names), device=labels.device)
        return ((labels.clamp(min=0)[:, None] >> shifts) & 1).float()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, -1)

    def predicted(self, probs: np.ndarray) -> list[int]:
        """Class indices, or AU masks, from (N, outputs) probabilities."""
        return decide(probs) if self.multilabel else np.asarray(probs).argmax(1).tolist()

    def score(self, y, probs: np.ndarray) -> tuple[float, float | None]:
        """(the selection figure, UAR or None): UF1 and UAR, or the mean AU F1 and None."""
        if self.multilabel:
            return au_scores(list(y), self.predicted(probs), self.names)["mean_f1"], None
        s = scores(y, np.asarray(probs).argmax(1), list(range(len(self.names))))
        return s.uf1, s.uar


def class_weights(job, device) -> torch.Tensor | None:
    """``loss.class_weights=inverse_freq``: each class weighted N / (C n_c) from the fold's
    training clips; under a multi-label protocol each AU's positives weighted by its negatives /
    positives. None with ``none`` (the default)."""
    from ..model.losses import inverse_freq_weights

    if job.experiment.loss.class_weights != "inverse_freq":
        return None
    if job.multilabel:
        pos = torch.tensor(job.label_counts, dtype=torch.float32)
        return torch.where(pos > 0, (job.train_clips - pos) / pos.clamp(min=1),
                           torch.ones_like(pos)).to(device)
    counts = torch.tensor(job.label_counts)
    labels = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return inverse_freq_weights(labels, len(counts)).to(device)
