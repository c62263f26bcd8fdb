"""Frame encoder: timm DinoV2 with LoRA (peft) on Q and V of the last blocks (docs/method.md, section 2).

timm fuses Q, K and V into one ``qkv`` Linear. LoRA on that Linear would also move K, so in the
LoRA blocks the fused layer is replaced by ``SplitQKV`` (three Linears holding the same weights,
same output) and peft targets only its ``q`` and ``v``: K stays exactly ``X W_k``.

The encoder splits into a *trunk* (patch embedding + blocks that never train) and a *head* (LoRA
blocks + final norm + pooling), so trunk tokens can be computed once per frame and cached.
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ..config import ModelConfig

_WARNED: set[str] = set()  # random-init warnings this process has shown


class SplitQKV(nn.Module):
    """A fused ``qkv`` Linear as three Linears with the same weights and the same output."""

    def __init__(self, fused: nn.Linear):
        super().__init__()
        d_in, d_out = fused.in_features, fused.out_features // 3
        bias = fused.bias is not None
        self.q, self.k, self.v = (nn.Linear(d_in, d_out, bias=bias) for _ in range(3))
        with torch.no_grad():
            for i, lin in enumerate((self.q, self.k, self.v)):
                lin.weight.copy_(fused.weight[i * d_out:(i + 1) * d_out])
                if bias:
                    lin.bias.copy_(fused.bias[i * d_out:(i + 1) * d_out])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


def pooling_matrix(n: int, g: int) -> torch.Tensor:
    """(g, n) averaging matrix: row i averages positions floor(i n / g) .. ceil((i + 1) n / g)
    - 1, the cells of adaptive average pooling from n to g. Pooling as two small matrix
    products has a deterministic backward pass on GPUs, where adaptive pooling's has none."""
    m = torch.zeros(g, n)
    for i in range(g):
        a, b = (i * n) // g, -(-((i + 1) * n) // g)
        m[i, a:b] = 1.0 / (b - a)
    return m


def fused_attention(x: torch.Tensor) -> bool:
    """Whether attention over ``x`` uses the fused kernel (``scaled_dot_product_attention``)
    rather than its three-step form (scores, softmax, weighted sum): the same function, rounded
    differently. Fused, except under bfloat16 autocast on the CPU, where the fused kernel's
    backward is slow (one block over 128 frames of 17 tokens: about 51 ms in bf16 against 6.6
    ms in fp32) and the three-step form's products run on the CPU's bf16 matrix units: the demo's
    two trained blocks, forward and backward, 117 ms in bf16 this way, about 300 ms in fp32
    (benchmarks/roofline.py has the whole fold). In fp32, and on GPUs, nothing changes."""
    return x.is_cuda or not torch.is_autocast_enabled(x.device.type)


class WeightsError(ValueError):
    """A backbone weights file that does not fit the model; the message names the file."""


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached_hub_file(name: str) -> Path | None:
    """The model's weights in the local Hugging Face cache, if an earlier run fetched them."""
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache

        repo = timm.models.get_pretrained_cfg(name).hf_hub_id
        for filename in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, filename)
            if isinstance(hit, str):
                return Path(hit)
    except Exception:  # no cache, no cfg: fall through to random init
        return None
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: backbone weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"{path}: not a torch state dict ({exc})") from exc
    for key in ("state_dict", "model", "teacher"):  # common checkpoint wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a mapping of parameter names to tensors")
    return state


def load_weights_strict(model: nn.Module, path: str | Path) -> None:
    """Load a timm- or DinoV2-format state dict; any missing or unexpected key is an error."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = checkpoint_filter_fn(read_state_dict(path), model)  # DinoV2 names, pos-embed size
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        def few(keys):
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        raise WeightsError(
            f"{path}: does not fit {type(model).__name__}: missing keys [{few(result.missing_keys)}]"
            f", unexpected keys [{few(result.unexpected_keys)}]. Is it a weights file for the "
            f"configured backbone?"
        )


@dataclass(frozen=True)
class BackboneSource:
    """Where a backbone's weights come from. Decided once (``resolve_backbone``, in the driver)
    and sent with every fold job, so that every process builds the same trunk from the same
    place instead of each probing the hub and its cache by itself. ``kind``: "file" (a weights
    file: the user's, or a copy in the local hub cache), "hub" (timm downloads the published
    weights) or "random"."""

    kind: str
    path: str | None = None
    label: str = ""  # what records call it: the file, "timm hub: NAME", "random init"

    @property
    def pretrained(self) -> bool:
        return self.kind in ("file", "hub")

    def sha256(self) -> str | None:
        """The weights file's sha256 (for "hub": the file timm downloaded into its cache)."""
        from ..provenance import file_sha256

        path = self.path
        if self.kind == "hub":
            name = self.label.removeprefix("timm hub: ")
            path = str(_cached_hub_file(name) or "") or None
        return file_sha256(path) if path else None


RANDOM = BackboneSource("random", None, "random init")
NO_BACKBONE = BackboneSource("none", None, "no backbone (the method has none)")


def resolve_backbone(cfg: ModelConfig) -> BackboneSource:
    """Where ``cfg``'s backbone weights come from on this machine: the given file, the hub, a
    copy in the local hub cache, or, loudly, none (random initialisation; an error instead with
    ``model.require_pretrained``)."""
    if cfg.backbone_weights:
        return BackboneSource("file", str(cfg.backbone_weights), str(cfg.backbone_weights))
    if cfg.pretrained:
        if _hub_reachable():
            return BackboneSource("hub", None, f"timm hub: {cfg.backbone}")
        cached = _cached_hub_file(cfg.backbone)
        if cached is not None:
            return BackboneSource("file", str(cached), f"local hub cache: {cached}")
    reason = ("pretrained weights were asked for but the hub cannot be reached and no cached "
              "copy exists" if cfg.pretrained else "pretrained is off and no backbone_weights "
              "file was given")
    if cfg.require_pretrained:
        raise WeightsError(
            f"{cfg.backbone}: DinoV2 weights are required (model.require_pretrained) but none "
            f"can be had: {reason}. Give them with --set model.backbone_weights=PATH (timm or "
            f"original DinoV2 format; timm's file is model.safetensors of hf-hub:timm/"
            f"{cfg.backbone}.lvd142m, fetched where the hub can be reached), make the hub "
            f"reachable (or its cache: HF_HUB_CACHE), or set model.require_pretrained=false to "
            f"train a randomly initialised backbone (results then record pretrained=false).")
    msg = (f"{cfg.backbone} is RANDOMLY INITIALISED ({reason}). Results will be recorded with "
           f"pretrained=false and are not comparable to published DinoV2 numbers. Give a local "
           f"copy of the weights with --set model.backbone_weights=PATH."
           + ("" if cfg.onset_relative else
              " The method's defaults are the paper's, meant for pretrained weights: with a "
              "random backbone they score near chance (about UF1 0.17 on 3 classes on the "
              "synthetic set); --config experiments/configs/demo.yaml holds settings chosen "
              "for a random backbone."))
    if msg not in _WARNED:  # once per process
        _WARNED.add(msg)
        warnings.warn(msg, stacklevel=2)
    return RANDOM


def build_backbone(cfg: ModelConfig, size: int, source: BackboneSource | None = None
                   ) -> tuple[nn.Module, BackboneSource]:
    """(timm ViT without classifier for S = ``size``, where its weights came from). ``source``:
    decided by the caller (``resolve_backbone``); None decides here."""
    import timm

    source = source or resolve_backbone(cfg)

    def make(pretrained: bool = False, **kwargs):
        return timm.create_model(cfg.backbone, pretrained=pretrained, img_size=size,
                                 num_classes=0, **kwargs)

    if source.kind == "file":
        model = make()
        load_weights_strict(model, source.path)
    elif source.kind == "hub":
        model = make(pretrained=True)
    else:
        model = make(init_values=cfg.random_init_layerscale)
    return model, source


class FrameEncoder(nn.Module):
    """Per-frame features (N, 3, S, S) -> (N, out_dim), with a cacheable frozen trunk."""

    def __init__(self, cfg: ModelConfig, size: int, source: BackboneSource | None = None):
        super().__init__()
        self.cfg, self.size = cfg, size
        vit, self.source = build_backbone(cfg, size, source)
        self.pretrained, self.weights_source = self.source.pretrained, self.source.label
        self.vit = vit
        n_blocks = len(vit.blocks)
        if cfg.lora_blocks > n_blocks:
            raise ValueError(f"lora_blocks={cfg.lora_blocks} but {cfg.backbone} has {n_blocks}")
        # Blocks from `split` on run in the head; for "frozen" the head is just norm + pooling.
        self.split = n_blocks - cfg.lora_blocks if cfg.uses_lora else n_blocks
        if cfg.uses_lora:
            self._add_lora(n_blocks)
        for name, p in self.vit.named_parameters():
            p.requires_grad = cfg.finetune == "full" or (cfg.uses_lora and "lora_" in name)
        self.embed_dim = vit.embed_dim
        per = {"cls_mean": 2, "grid": cfg.frame_grid ** 2}.get(cfg.frame_feature, 1)
        self.out_dim = vit.embed_dim * per

    def _add_lora(self, n_blocks: int) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        targets = []
        for i in range(self.split, n_blocks):
            self.vit.blocks[i].attn.qkv = SplitQKV(self.vit.blocks[i].attn.qkv)
            targets += [f"blocks.{i}.attn.qkv.q", f"blocks.{i}.attn.qkv.v"]
        lora = LoraConfig(r=self.cfg.lora_rank, lora_alpha=self.cfg.lora_alpha,
                          lora_dropout=self.cfg.lora_dropout, target_modules=targets, bias="none")
        inject_adapter_in_model(lora, self.vit)

    @property
    def num_prefix_tokens(self) -> int:
        return self.vit.num_prefix_tokens

    def trunk_parameters(self):
        """(name, tensor) of everything ``trunk`` computes with: patch embedding, prefix tokens,
        position embedding and the blocks before ``split``."""
        head = {f"blocks.{i}." for i in range(self.split, len(self.vit.blocks))}
        for name, p in self.vit.named_parameters():
            if name.startswith(("norm.", "fc_norm.", "head.")) or \
                    any(name.startswith(h) for h in head):
                continue
            yield name, p

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised images -> trunk tokens (N, L, D), L = prefix + patches."""
        v = self.vit
        x = v.norm_pre(v.patch_drop(v._pos_embed(v.patch_embed(images))))
        for blk in v.blocks[:self.split]:
            x = blk(x)
        return x

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Trunk tokens (N, L, D) -> frame features (N, out_dim)."""
        x = tokens
        fused = fused_attention(tokens)
        for blk in self.vit.blocks[self.split:]:
            blk.attn.fused_attn = fused
            x = blk(x)
        x = self.vit.norm(x)
        cls, patches = x[:, 0], x[:, self.num_prefix_tokens:].mean(dim=1)
        if self.cfg.frame_feature == "grid":
            side = self.size // 14
            grid = x[:, self.num_prefix_tokens:].transpose(1, 2).reshape(
                x.shape[0], -1, side, side)
            pool = pooling_matrix(side, self.cfg.frame_grid).to(grid)
            return torch.einsum("ia,ndab,jb->ndij", pool, grid, pool).flatten(1)
        if self.cfg.frame_feature == "cls":
            return cls
        if self.cfg.frame_feature == "mean_patch":
            return patches
        return torch.cat([cls, patches], dim=-1)

    def forward(self, images: torch.Tensor, trunk_grad: bool = False) -> torch.Tensor:
        """``trunk_grad``: keep the graph through a frozen trunk too (input saliency); the
        values are the same either way."""
        if self.cfg.trunk_frozen and not trunk_grad:
            with torch.no_grad():  # nothing in the trunk trains: keep no graph for it
                tokens = self.trunk(images)
        else:
            tokens = self.trunk(images)
        return self.head(tokens)
