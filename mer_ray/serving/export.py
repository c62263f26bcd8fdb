"""The whole model as a torch.export program that needs only torch: aligned uint8 frames in,
probabilities and the explanatory outputs out."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch
from torch.export import Dim

from ..model import MERNet
from ..model.inputs import IMAGENET_MEAN, IMAGENET_STD
from .modelfile import LoadedModel


class ExportedMER(torch.nn.Module):
    """What ``mer-ray export`` writes: aligned uint8 frames (B, T, S, S, 3) in, a dict of
    probabilities, logits and the explanatory outputs out. Normalisation is inside."""

    def __init__(self, net: MERNet):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1))

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (frames.permute(0, 1, 4, 2, 3).float() / 255.0 - self.mean) / self.std
        out = self.net(x)
        keep = ("logits", "w", "alpha_low", "alpha_high", "attention", "kernel_weights")
        res = {k: out[k] for k in keep if k in out}
        res["probabilities"] = torch.softmax(out["logits"], dim=-1)
        return res


def export_model(model: LoadedModel, out: str | Path, batch_max: int = 256,
                 seed: int = 0) -> dict:
    """torch.export the whole model to a .pt2 file with its metadata; the file is loaded back
    and checked against the model on random frames. Returns the check's figures."""
    out = Path(out)
    wrapper = ExportedMER(model.net).eval()
    t, s = model.preprocess.frames, model.preprocess.size
    g = torch.Generator().manual_seed(seed)
    example = torch.randint(0, 256, (2, t, s, s, 3), dtype=torch.uint8, generator=g)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # nn.LSTM re-assigns its flat weight list while being traced; the values are exported
        warnings.filterwarnings("ignore", message=".*_flat_weights.*")
        ep = torch.export.export(
            wrapper, (example,),
            dynamic_shapes={"frames": {0: Dim("batch", min=1, max=batch_max)}})
    meta = {k: model.meta[k] for k in ("code_version", "config_hash", "class_names",
                                        "preprocess", "normalisation", "pretrained",
                                        "weights_source", "source", "experiment")}
    meta["input"] = (f"uint8 aligned frames (B, {t}, {s}, {s}, 3), RGB, faces aligned by eye "
                     f"centres as in 'preprocess'; B from 1 to {batch_max}")
    meta["outputs"] = sorted(wrapper(example[:1]).keys())
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(ep, str(out), extra_files={"mer_ray.json": json.dumps(meta)})
    seconds = time.perf_counter() - t0
    loaded = torch.export.load(str(out)).module()
    check = torch.randint(0, 256, (3, t, s, s, 3), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        want, got = wrapper(check), loaded(check)
    diff = max(float((want[k] - got[k]).abs().max()) for k in want)
    if diff > 1e-4:
        raise RuntimeError(f"{out}: the exported model's outputs differ from the model's by "
                           f"{diff:.2e}")
    return {"out": str(out), "seconds": round(seconds, 2), "max_abs_diff": diff,
            "outputs": meta["outputs"], "bytes": out.stat().st_size}


def load_exported(path: str | Path):
    """(module, metadata) of an exported model; needs torch only."""
    extra = {"mer_ray.json": ""}
    ep = torch.export.load(str(path), extra_files=extra)
    return ep.module(), json.loads(extra["mer_ray.json"])

