"""DGAT: dynamic graph attention over the T frames, guided by SFA's frequency weights
(docs/method.md, section 4)."""

from __future__ import annotations

import math

import torch
from torch import nn


class FrameGraphAttention(nn.Module):
    """Dense frame graph with self-loops; H heads; score q_i.k_j/sqrt(d_h) + lambda_f*psi_ij with
    psi_ij = 1 - |w_i - w_j|; heads concatenated, projected, residual + LayerNorm."""

    def __init__(self, d: int, heads: int, freq_guidance: bool, lambda_f_init: float = 1.0):
        super().__init__()
        self.heads, self.d_h = heads, d // heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.freq_guidance = freq_guidance
        self.lambda_f = nn.Parameter(torch.tensor(float(lambda_f_init)))

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, T, d), w (B, T) -> G (B, T, d), attention (B, H, T, T) whose rows sum to 1."""
        b, t, d = h.shape
        split = lambda x: x.view(b, t, self.heads, self.d_h).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_h)  # (B, H, T, T)
        if self.freq_guidance:
            psi = 1.0 - (w[:, :, None] - w[:, None, :]).abs()  # (B, T, T)
            scores = scores + self.lambda_f * psi[:, None]
        attn = torch.softmax(scores, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, t, d)
        return self.norm(h + self.o(out)), attn


class DGAT(nn.Module):
    """(B, T, D) encoder features and w (B, T) -> F_dgat (B, d_t) and the attention."""

    def __init__(self, d_in: int, d: int, heads: int, freq_guidance: bool, use_lstm: bool,
                 lambda_f_init: float = 1.0):
        super().__init__()
        # (ours) the residual needs the input at width d_t: one Linear brings it there
        self.inp = nn.Linear(d_in, d)
        self.gat = FrameGraphAttention(d, heads, freq_guidance, lambda_f_init)
        self.lstm = nn.LSTM(d, d, num_layers=1, batch_first=True) if use_lstm else None

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
        g, attn = self.gat(self.inp(x), w)
        if self.lstm is not None:
            g, _ = self.lstm(g)
        return {"f_dgat": g.max(dim=1).values, "attention": attn}
