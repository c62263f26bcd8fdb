"""CE + lambda1 * KoLeo + lambda2 * consistency (docs/method.md, section 6)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import LossConfig


def koleo(y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """-(1/B) sum_i log(min_{j != i} ||y_i - y_j|| + eps) over L2-normalised rows of y (B, d).

    Zero for B < 2. Duplicate rows give log(eps): finite, and so is the gradient (the distance
    is taken as sqrt(d^2 + 1e-12), never a bare sqrt at 0)."""
    if y.shape[0] < 2:
        return y.new_zeros(())
    y = F.normalize(y, dim=-1)
    d2 = (y[:, None, :] - y[None, :, :]).pow(2).sum(-1)
    d2 = d2 + torch.diag(torch.full((y.shape[0],), float("inf"), device=y.device))
    nearest = (d2.min(dim=1).values + 1e-12).sqrt()
    return -torch.log(nearest + eps).mean()


def consistency(p_sfa: torch.Tensor, p_dgat: torch.Tensor) -> torch.Tensor:
    """mean_b || norm(p_sfa_b) - norm(p_dgat_b) ||^2 (inputs already projected to one width)."""
    return (F.normalize(p_sfa, dim=-1) - F.normalize(p_dgat, dim=-1)).pow(2).sum(-1).mean()


def inverse_freq_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class weights N / (C * n_c) from training labels; classes without samples get 0."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)),
                          torch.zeros_like(counts))
    return weights


def default_loss(logits: torch.Tensor, targets: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on class indices (``weight`` per class); binary cross-entropy on 0/1 AU
    targets (floats, the CD6ME protocol's; ``weight`` per AU's positives)."""
    if targets.is_floating_point():
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
    return F.cross_entropy(logits, targets, weight=weight)


class MERLoss(nn.Module):
    """Returns a dict: ``total`` and its parts ``ce``, ``koleo``, ``cons`` (for logging)."""

    def __init__(self, cfg: LossConfig, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, out: dict[str, torch.Tensor], labels: torch.Tensor,
                target: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``out``: the network's outputs on labelled clips. ``target``: its outputs on unlabelled
        target-domain clips (domain adaptation), which add to the consistency term only."""
        ce = default_loss(out["logits"], labels, self.class_weights)
        kl = koleo(out["fused"], self.cfg.koleo_eps)
        if "cons_sfa" in out:
            p_s, p_t = out["cons_sfa"], out["cons_dgat"]
            if target is not None:
                p_s = torch.cat([p_s, target["cons_sfa"]])
                p_t = torch.cat([p_t, target["cons_dgat"]])
            cons = consistency(p_s, p_t)
        else:  # one branch ablated: nothing to be consistent with
            cons = ce.new_zeros(())
        total = ce + self.cfg.lambda1 * kl + self.cfg.lambda2 * cons
        return {"total": total, "ce": ce.detach(), "koleo": kl.detach(), "cons": cons.detach()}
