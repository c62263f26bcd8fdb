"""The whole network: frames -> encoder -> SFA and DGAT -> dynamic-convolution fusion -> logits.

``MERNet(cfg, num_classes, S)(clips)`` takes normalised clips (B, T, 3, S, S) and returns a dict:

- ``logits`` (B, C), ``fused`` (B, d_f): the fused features KoLeo acts on
- ``f_sfa`` (B, d_s), ``w`` (B, T), ``alpha_low`` / ``alpha_high`` (B, K)   when SFA is on
- ``f_dgat`` (B, d_t), ``attention`` (B, H, T, T)                         when DGAT is on
- ``cons_sfa`` / ``cons_dgat``: the two branches projected to a common width (both on)
- ``kernel_weights`` (B, Kc): the fusion's kernel mixture
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .dgat import DGAT
from .encoder import BackboneSource, FrameEncoder
from .fusion import DynamicConvFusion
from .sfa import SFA


class MERNet(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int, size: int,
                 source: BackboneSource | None = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (got {num_classes})")
        if size < 14 or size % 14:
            raise ValueError(f"the frame size must be a positive multiple of 14, the ViT patch "
                             f"size (got {size})")
        self.cfg, self.num_classes, self.size = cfg, num_classes, size
        self.encoder = FrameEncoder(cfg, size, source)
        d = self.encoder.out_dim
        self.sfa = SFA(d, cfg.sfa_dim, cfg.sfa_experts, cfg.sfa_rho, cfg.eps) if cfg.use_sfa \
            else None
        self.dgat = DGAT(d, cfg.dgat_dim, cfg.dgat_heads, cfg.use_freq_guidance, cfg.use_lstm,
                         cfg.lambda_f_init) if cfg.use_dgat else None
        # Onset-relative input (ours): what moved since the onset, at unit scale per dimension.
        self.onset_norm = nn.BatchNorm1d(d, affine=False) if cfg.onset_relative else None
        self.pool_proj = None
        if self.sfa is not None and self.dgat is not None:
            z_dim = cfg.sfa_dim + cfg.dgat_dim
            common = min(cfg.sfa_dim, cfg.dgat_dim)
            same = cfg.sfa_dim == cfg.dgat_dim
            # Consistency compares the branches at one width; projections only when they differ.
            self.cons_sfa = nn.Identity() if same else nn.Linear(cfg.sfa_dim, common)
            self.cons_dgat = nn.Identity() if same else nn.Linear(cfg.dgat_dim, common)
        elif self.sfa is not None:
            z_dim = cfg.sfa_dim
        elif self.dgat is not None:
            z_dim = cfg.dgat_dim
        else:  # neither branch: mean over time of the frame features, projected
            self.pool_proj = nn.Linear(d, cfg.fusion_dim)
            z_dim = cfg.fusion_dim
        self.fusion = DynamicConvFusion(z_dim, cfg.fusion_dim, cfg.fusion_kernels)
        self.classifier = nn.Linear(cfg.fusion_dim, num_classes)

    @property
    def pretrained(self) -> bool:
        """Whether the backbone holds published (or user-supplied) weights, not random ones."""
        return self.encoder.pretrained

    def frame_features(self, clips: torch.Tensor, trunk_grad: bool = False) -> torch.Tensor:
        """(B, T, 3, S, S) -> X (B, T, D)."""
        b, t = clips.shape[:2]
        return self.encoder(clips.flatten(0, 1), trunk_grad).view(b, t, -1)

    def trunk_tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) -> frozen-trunk tokens (B, T, L, D), for caching."""
        if not self.cfg.trunk_frozen:
            raise ValueError("finetune='full' trains the whole backbone: its trunk cannot be "
                             "cached")
        b, t = clips.shape[:2]
        with torch.no_grad():
            tok = self.encoder.trunk(clips.flatten(0, 1))
        return tok.view(b, t, *tok.shape[1:])

    def forward(self, clips: torch.Tensor | None = None, *,
                tokens: torch.Tensor | None = None,
                trunk_grad: bool = False) -> dict[str, torch.Tensor]:
        """Either ``clips`` (B, T, 3, S, S) or cached trunk ``tokens`` (B, T, L, D).
        ``trunk_grad`` keeps gradients through a frozen trunk (saliency on the input pixels)."""
        if (clips is None) == (tokens is None):
            raise ValueError("pass exactly one of clips or tokens")
        if tokens is not None:
            b, t = tokens.shape[:2]
            x = self.encoder.head(tokens.flatten(0, 1).float()).view(b, t, -1)
        else:
            x = self.frame_features(clips, trunk_grad)
        return self.forward_features(x)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.onset_norm is not None:
            x = x - x[:, :1]
            x = self.onset_norm(x.flatten(0, 1)).view_as(x)
        parts = []
        if self.sfa is not None:
            out.update(self.sfa(x))
            parts.append(out["f_sfa"])
            w = out["w"]
        else:  # docs/method.md 5.4: without SFA the frequency term sees w = 0
            w = x.new_zeros(x.shape[:2])
        if self.dgat is not None:
            out.update(self.dgat(x, w))
            parts.append(out["f_dgat"])
        z = torch.cat(parts, dim=-1) if parts else self.pool_proj(x.mean(dim=1))
        fused, pi = self.fusion(z)
        out.update(fused=fused, kernel_weights=pi, logits=self.classifier(fused))
        if self.sfa is not None and self.dgat is not None:
            out["cons_sfa"] = self.cons_sfa(out["f_sfa"])
            out["cons_dgat"] = self.cons_dgat(out["f_dgat"])
        return out

    def parameter_counts(self) -> tuple[int, int]:
        """(total, trainable) parameters."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return total, trainable
