"""Dynamic-convolution fusion and the classifier (docs/method.md, section 5)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DynamicConvFusion(nn.Module):
    """pi = softmax(FC(Z)) over Kc kernels; Y = GELU((sum_k pi_k W_k) Z + sum_k pi_k b_k).

    Each W_k is a 1x1 convolution over channels, i.e. a (d_in -> d_out) matrix. Mixing the
    outputs of the Kc matrices with pi equals applying the mixed matrix, and is cheaper."""

    def __init__(self, d_in: int, d_out: int, kernels: int):
        super().__init__()
        self.route = nn.Linear(d_in, kernels)
        self.weight = nn.Parameter(torch.empty(kernels, d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(kernels, d_out))
        for k in range(kernels):
            nn.init.kaiming_uniform_(self.weight[k], a=5 ** 0.5)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pi = torch.softmax(self.route(z), dim=-1)  # (B, Kc)
        per_kernel = torch.einsum("bi,koi->bko", z, self.weight) + self.bias  # (B, Kc, d_out)
        return F.gelu((pi[:, :, None] * per_kernel).sum(dim=1)), pi
