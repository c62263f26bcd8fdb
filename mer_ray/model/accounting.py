"""Parameters, FLOPs and peak memory of a model configuration (the paper's Table 7 columns)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig
from .encoder import RANDOM
from .network import MERNet


@dataclass
class ModelStats:
    name: str
    backbone: str
    total_params: int
    trainable_params: int
    gflops_forward: float  # per clip (T frames), inference
    gflops_train: float  # per clip, forward + backward of one training step
    peak_memory_mb: float | None  # one training step; see memory_kind
    memory_kind: str  # how peak_memory_mb was obtained (see training_memory)
    peak_rss_mb: float | None = None  # see training_rss; None when not measured


def _counting_model(cfg: ModelConfig, num_classes: int, size: int) -> MERNet:
    """The model's structure with a random backbone: counting needs no published weights."""
    return MERNet(cfg, num_classes, size, RANDOM)


def count_flops(net: MERNet, frames: int) -> tuple[float, float]:
    """(forward GFLOPs, training-step GFLOPs) for one clip, by torch's flop counter.

    The counter sees matrix products and convolutions; the FFTs in SFA are not counted (they
    are O(T D log(T D)), far below the ViT's matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    s = net.size
    x = torch.randn(1, frames, 3, s, s)
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fwd:
        net(x)
    net.train()
    with FlopCounterMode(display=False) as step:
        net(x)["logits"].logsumexp(-1).sum().backward()
    net.zero_grad(set_to_none=True)
    return fwd.get_total_flops() / 1e9, step.get_total_flops() / 1e9


def _adam_steps(net: MERNet, x: torch.Tensor) -> None:
    """Two training steps with Adam on the trainable parameters (the second holds Adam's
    state too): what the memory figures measure."""
    net.train()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    for _ in range(2):
        opt.zero_grad()
        net(x)["logits"].logsumexp(-1).sum().backward()
        opt.step()


def training_memory(net: MERNet, frames: int, batch: int = 1,
                    device: torch.device | None = None) -> tuple[float, str]:
    """Memory of one training step with Adam, in MB.

    On a GPU: the allocator's peak over two steps. On the CPU, where torch keeps no allocator
    statistics: parameters + gradients + Adam's two moments (trainable parameters only) + the
    activations autograd saves for the backward pass (unique storages, parameters excluded),
    the same quantities that make up a GPU's peak. ``device``: where to measure (the caller
    asks the device rule, ``fitting/device.py``); default the CPU."""
    s = net.size
    trainable = [p for p in net.parameters() if p.requires_grad]
    if device is not None and device.type == "cuda":
        net = net.to(device)
        x = torch.randn(batch, frames, 3, s, s, device=device)
        torch.cuda.reset_peak_memory_stats()
        _adam_steps(net, x)
        peak = torch.cuda.max_memory_allocated() / 2**20
        net.cpu()
        return peak, "cuda peak allocated"
    nbytes = lambda ps: sum(p.numel() * p.element_size() for p in ps)  # noqa: E731
    param_ptrs = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in param_ptrs:
            saved[st.data_ptr()] = st.nbytes()
        return t

    x = torch.randn(batch, frames, 3, s, s)
    net.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = net(x)["logits"].logsumexp(-1).sum()
    loss.backward()
    net.zero_grad(set_to_none=True)
    total = nbytes(net.parameters()) + 3 * nbytes(trainable) + sum(saved.values())
    return total / 2**20, "params + grads + Adam + saved activations"


def _peak_rss(reset: bool = False) -> int:
    """This process's peak RSS in bytes (Linux VmHWM); ``reset`` restarts the peak from the
    current RSS (writing 5 to /proc/self/clear_refs)."""
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise OSError("no VmHWM in /proc/self/status")


def _rss_steps(cfg: ModelConfig, num_classes: int, frames: int, size: int, batch: int) -> int:
    """In a fresh process: build the model, restart the peak-RSS mark (so construction
    transients do not count), take two Adam training steps; the peak RSS in bytes."""
    import gc

    net = _counting_model(cfg, num_classes, size)
    x = torch.randn(batch, frames, 3, size, size)
    gc.collect()
    _peak_rss(reset=True)
    _adam_steps(net, x)
    return _peak_rss()


_PROBE = """
import json, sys
from mer_ray.model.accounting import _rss_steps
from mer_ray.config import ModelConfig, from_dict
a = json.loads(sys.stdin.read())
print(_rss_steps(from_dict(ModelConfig, a["cfg"]), a["classes"], a["frames"], a["size"],
                 a["batch"]))
"""


def training_rss(cfg: ModelConfig, frames: int, size: int, num_classes: int = 3,
                 batch: int = 1) -> float:
    """Peak resident memory, in MB, of a fresh Python process while it takes two training
    steps with Adam on the CPU (Linux): what the operating system sees, the built model, torch
    and the Python runtime included (a process that only imports them is a few hundred MB);
    the transients of building the model are not counted."""
    import json
    import subprocess
    import sys
    from dataclasses import asdict

    args = {"cfg": asdict(cfg), "classes": num_classes, "frames": frames, "size": size,
            "batch": batch}
    proc = subprocess.run([sys.executable, "-c", _PROBE], input=json.dumps(args),
                          capture_output=True, text=True, env={**os.environ,
                                                               "CUDA_VISIBLE_DEVICES": ""})
    if proc.returncode != 0:
        raise RuntimeError(f"the memory probe process failed ({proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return int(proc.stdout.strip().splitlines()[-1]) / 2**20


TABLE_CLASSES = 3  # the classes of the head whose parameters model_stats counts


def model_stats(name: str, cfg: ModelConfig, frames: int, size: int, memory: bool = True,
                batch: int = 1, device: torch.device | None = None,
                rss: bool = False) -> ModelStats:
    """Table 7 columns for clips of ``frames`` frames of ``size`` pixels, the memory measured
    on ``device`` (the caller asks the device rule; default the CPU). ``rss``: also the peak
    RSS of a process training this model on the CPU (a few seconds: a fresh process imports
    torch). The head has ``TABLE_CLASSES`` classes, as the paper's Table 7 counts."""
    net = _counting_model(cfg, TABLE_CLASSES, size)
    total, trainable = net.parameter_counts()
    fwd, train = count_flops(net, frames)
    mem, kind = training_memory(net, frames, batch, device) if memory else \
        (None, "not measured")
    peak_rss = training_rss(cfg, frames, size, TABLE_CLASSES, batch) if rss else None
    return ModelStats(name, cfg.backbone, total, trainable, fwd, train, mem, kind, peak_rss)
