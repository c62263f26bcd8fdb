"""Training-only augmentation (docs/method.md, section 1): one draw per clip, applied to all its frames."""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch.nn import functional as F

from ...config import TrainConfig


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


def view_generator(seed: int, key: str, view: int) -> torch.Generator:
    """The generator of one clip's augmented view: a function of (seed, clip key, view) only, so
    every process and every batch composition draws the same view."""
    parts = [int(seed) % 2**32, zlib.crc32(key.encode()), int(view)]
    return torch.Generator().manual_seed(int(np.random.SeedSequence(parts).generate_state(1)[0]))


def clip_views(x: torch.Tensor, keys: list[str], cfg: TrainConfig) -> torch.Tensor:
    """x (B, T, 3, S, S) normalised clips -> (B, cfg.cached_views - 1, T, 3, S, S): each clip's
    augmented views 1, 2, ... (view 0 is the clip itself), one draw of ``augment_clips`` each."""
    views = [torch.cat([augment_clips(x[i:i + 1], cfg, view_generator(cfg.seed, k, v))
                        for v in range(1, cfg.cached_views)])
             for i, k in enumerate(keys)]
    return torch.stack(views)
