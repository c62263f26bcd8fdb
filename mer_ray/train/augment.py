"""Training-only augmentation (METHOD.md section 1): one draw per clip, applied to all its frames."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..config import TrainConfig


def augment_clips(x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """x (B, T, 3, S, S) -> same shape: horizontal flip (p = flip_p) and a mild affine
    (rotation, scale, translation), the same for every frame of a clip."""
    b, t, c, h, w = x.shape
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=generator)  # noqa: E731
    flip = torch.rand(b, generator=generator) < cfg.flip_p
    angle = u(-cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
    scale = u(cfg.scale_min, cfg.scale_max)
    tx, ty = u(-cfg.translate, cfg.translate) * 2, u(-cfg.translate, cfg.translate) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sx = torch.where(flip, -1.0, 1.0)
    # affine_grid maps output to input coordinates in [-1, 1]; x negated first for the flip
    theta = torch.stack([torch.stack([cos * sx, -sin, tx], -1),
                         torch.stack([sin * sx, cos, ty], -1)], 1).to(x.dtype)  # (B, 2, 3)
    theta = theta.to(x.device).repeat_interleave(t, dim=0)
    frames = x.reshape(b * t, c, h, w)
    grid = F.affine_grid(theta, frames.shape, align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(b, t, c, h, w)
