"""Building the fold model the same way everywhere, and fingerprints of its frozen weights.

Every fold, search trial, trunk-token pass and model file builds the network here: seeded right
before building, so every process gets the same initial weights. The fingerprints name frozen
weights: ``trunk_fingerprint`` the cached trunk (which tokens a fold may read),
``frozen_fingerprint`` everything that never trains (which backbone a stored fold belongs to).
"""

from __future__ import annotations

import hashlib
import random
import threading

import numpy as np
import torch

from ..config import ExperimentConfig
from .encoder import BackboneSource
from .network import MERNet

# Building seeds the process's global generators; two builds at once (threads of one process)
# would draw from each other's seeded streams.
_BUILD_LOCK = threading.Lock()


class TrunkMismatch(RuntimeError):
    """Tokens computed by another trunk than the one this process built."""


def set_determinism(on: bool) -> None:
    """Deterministic algorithms only, or the fastest ones. cuBLAS needs its workspace setting
    before its first use in the process, so this runs before a fold touches the GPU."""
    import os

    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(exp: ExperimentConfig, num_classes: int,
                source: BackboneSource | None = None) -> MERNet:
    """The same initial weights in every fold and every process: seeded right before building,
    one build at a time. ``source``: where the backbone weights come from, as the driver
    decided (``encoder.resolve_backbone``); None decides here."""
    with _BUILD_LOCK:
        seed_everything(exp.train.seed)
        return MERNet(exp.model, num_classes, exp.data.size, source)


def trunk_fingerprint(net: MERNet) -> str:
    """sha256 over the trunk's parameter names and values and the input size."""
    h = hashlib.sha256(f"S={net.size}".encode())
    for name, p in net.encoder.trunk_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def frozen_fingerprint(net: MERNet) -> str:
    """sha256 over the parameters that never train (the backbone outside LoRA): a rebuilt model
    whose frozen weights differ (other pretrained weights, another random init) is refused."""
    h = hashlib.sha256()
    for name, p in net.named_parameters():
        if not p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
