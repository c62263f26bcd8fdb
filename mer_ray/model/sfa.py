"""SFA: spatial frequency adaptation over the (time, feature) map (docs/method.md, section 3)."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@lru_cache(maxsize=32)
def _mask_np(t: int, d: int, rho: float, centred: bool = True) -> np.ndarray:
    # Cached as numpy, not as a tensor: a tensor cached while torch.export traces would be a
    # fake tensor, and every later eager call would get it back.
    u = (np.arange(t, dtype=np.float64) - t // 2) / t
    v = (np.arange(d, dtype=np.float64) - d // 2) / d
    m = (np.sqrt(u[:, None] ** 2 + v[None, :] ** 2) <= rho).astype(np.float32)
    return m if centred else np.fft.ifftshift(m)


def low_pass_mask(t: int, d: int, rho: float, device=None, centred: bool = True
                  ) -> torch.Tensor:
    """Binary (T, D) mask of the centred (fftshifted) spectrum: 1 within radius ``rho`` of the
    centre, in normalised coordinates u = (i - T//2)/T, v = (j - D//2)/D. ``centred=False``:
    the same mask moved back to the unshifted spectrum's order (``ifftshift``), the order
    ``torch.fft.fft2`` returns."""
    return torch.from_numpy(_mask_np(t, d, float(rho), centred)).to(device)


def frequency_split(x: torch.Tensor, rho: float, eps: float = 1e-6):
    """(B, T, D) -> (x_low, x_high, w). x_low + x_high == x; w (B, T) in [0, 1] is each frame's
    share of high-frequency energy.

    The centred mask applied to the shifted spectrum and shifted back (``ifftshift(fftshift(F)
    * m)``) is the unshifted spectrum times the unshifted mask (``F * ifftshift(m)``): the same
    products of the same numbers, so the same values to the last bit, without moving the
    spectrum there and back in the forward and the backward pass."""
    t, d = x.shape[-2:]
    work = torch.promote_types(x.dtype, torch.float32)  # FFT in at least float32
    spec = torch.fft.fft2(x.to(work))
    m = low_pass_mask(t, d, rho, x.device, centred=False)
    x_low = torch.fft.ifft2(spec * m).real
    x_high = torch.fft.ifft2(spec * (1 - m)).real
    e_low, e_high = x_low.pow(2).sum(-1), x_high.pow(2).sum(-1)
    w = e_high / (e_low + e_high + eps)
    return x_low.to(x.dtype), x_high.to(x.dtype), w.to(x.dtype)


@contextmanager
def _without_onednn():
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


class _NativeConv(torch.autograd.Function):
    """A stride-1, padding-1 convolution whose forward and backward both skip oneDNN."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        with _without_onednn():
            return F.conv2d(x, weight, bias, padding=1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        with _without_onednn():
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                list(ctx.needs_input_grad))
        return gx, gw, gb


def conv_same(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for the 3x3, padding-1 convolutions over SFA's (T, D) maps. The maps have
    one channel and thousands of columns; on the CPU oneDNN's kernels for that shape are
    several times slower than ATen's own, the backward above all (about 64 ms against 18 ms
    for a batch of 16 at D = 3456, forward and backward). Same values either way."""
    if x.is_cuda or not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type):
        return conv(x)  # inference, export and mixed precision: the plain module
    return _NativeConv.apply(x, conv.weight, conv.bias)


class FEM(nn.Module):
    """Normalise each frame over D (learnable gamma, beta), then a 3x3 conv on the (T, D) map
    gives two maps Z1, Z2."""

    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.conv = nn.Conv2d(1, 2, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = conv_same(self.conv, self.norm(x).unsqueeze(1))  # (B, 2, T, D)
        return z[:, 0:1], z[:, 1:2]


class ExpertMixture(nn.Module):
    """K experts, each h_n = E1_n(Z1) * E2_n(Z2) (two 3x3 one-channel convs); gate
    alpha = softmax_n(theta_n * mean(h_n)); output sum_n alpha_n h_n."""

    def __init__(self, k: int):
        super().__init__()
        # K one-channel convolutions side by side: one Conv2d(1, K) per side.
        self.e1 = nn.Conv2d(1, k, kernel_size=3, padding=1)
        self.e2 = nn.Conv2d(1, k, kernel_size=3, padding=1)
        self.theta = nn.Parameter(torch.ones(k))

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = conv_same(self.e1, z1) * conv_same(self.e2, z2)  # (B, K, T, D): the interaction
        e = h.mean(dim=(-2, -1))  # (B, K)
        alpha = torch.softmax(self.theta * e, dim=-1)
        return (alpha[:, :, None, None] * h).sum(dim=1), alpha


class SFA(nn.Module):
    """(B, T, D) -> F_sfa (B, d_s), plus w (B, T) and the expert weights (B, K) low and high."""

    def __init__(self, d: int, out_dim: int, experts: int, rho: float, eps: float = 1e-6):
        super().__init__()
        self.rho, self.eps = rho, eps
        self.fem_low, self.fem_high = FEM(d), FEM(d)
        self.moe_low, self.moe_high = ExpertMixture(experts), ExpertMixture(experts)
        self.out = nn.Linear(d, out_dim)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_low, x_high, w = frequency_split(x, self.rho, self.eps)
        r_low, a_low = self.moe_low(*self.fem_low(x_low))
        r_high, a_high = self.moe_high(*self.fem_high(x_high))
        s = r_low + r_high  # (B, T, D)
        return {"f_sfa": self.out(s.mean(dim=1)), "w": w, "alpha_low": a_low,
                "alpha_high": a_high}
