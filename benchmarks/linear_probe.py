"""How much class signal the frozen backbone's features carry: LOSO linear probes.

    python benchmarks/linear_probe.py [--size 112 224] [--intensity 1.0] [--no-distractors]

Renders a synthetic SAMM-layout set (8 subjects x 3 classes x 2 clips), aligns it exactly as
``prepare`` does, and fits a logistic regression per LOSO fold on clip descriptors built from the
encoder's frame features (the backbone as configured: pretrained when weights can be had,
otherwise randomly initialised, which the table says). Descriptors:

- mean_patch delta: mean patch token of the middle sampled frame minus that of the onset frame
- grid 4x4 delta: the same with patch tokens average-pooled to a 4x4 grid (keeps where it moved)
- pixels delta: the aligned middle frame minus the onset frame (every 7th value)

Prints UF1 over all folds' predictions (chance about 0.33). It tells whether a model could learn
the synthetic classes from such features at all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.console import show  # noqa: E402
from mer_ray.data.manifest import build_manifest, included  # noqa: E402
from mer_ray.data.prepare import PrepareConfig, prepare_clip  # noqa: E402
from mer_ray.data.synth import generate  # noqa: E402
from mer_ray.data.synth.render import RenderConfig  # noqa: E402
from mer_ray.metrics import scores  # noqa: E402
from mer_ray.model import MERNet  # noqa: E402
from mer_ray.model.inputs import clips_to_tensor  # noqa: E402
from mer_ray.model.variants import variant  # noqa: E402


def loso_probe(x: np.ndarray, y: np.ndarray, subjects: np.ndarray) -> float:
    pred = np.zeros_like(y)
    for s in np.unique(subjects):
        tr = subjects != s
        clf = LogisticRegression(max_iter=3000).fit(x[tr], y[tr])
        pred[~tr] = clf.predict(x[~tr])
    return scores(y, pred, sorted(set(y.tolist()))).uf1


def final_tokens(net: MERNet, clips: torch.Tensor) -> torch.Tensor:
    enc = net.encoder
    x = enc.trunk(clips.flatten(0, 1))
    for blk in enc.vit.blocks[enc.split:]:
        x = blk(x)
    return enc.vit.norm(x)[:, enc.num_prefix_tokens:]  # (B*T, patches, D)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs="+", default=[112, 224])
    p.add_argument("--intensity", type=float, default=1.0)
    p.add_argument("--no-distractors", action="store_true")
    p.add_argument("--frames", type=int, default=8)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="merprobe-") as tmp:
        render = RenderConfig(intensity=args.intensity, distractors=not args.no_distractors)
        generate(tmp, "samm", 8, 2, "3class", seed=0, render=render, progress=False)
        clips = included(build_manifest("samm", tmp, "3class")).to_dicts()
        y = np.array([c["label_id"] for c in clips])
        subjects = np.array([c["subject"] for c in clips])
        mid = args.frames // 2
        for size in args.size:
            frames = np.stack([prepare_clip(c, PrepareConfig(frames=args.frames, size=size))
                               ["frames"] for c in clips])
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the table's column says whether it is random
                net = MERNet(variant("full"), 3, size).eval()
            pretrained = net.pretrained
            mean_d, grid_d = [], []
            with torch.no_grad():
                for i in range(0, len(frames), 8):
                    batch = clips_to_tensor(frames[i:i + 8])
                    b, t = batch.shape[:2]
                    tok = final_tokens(net, batch)
                    n = int(tok.shape[1] ** 0.5)
                    grid = F.adaptive_avg_pool2d(tok.transpose(1, 2).reshape(b * t, -1, n, n), 4)
                    mean = tok.mean(1).view(b, t, -1)
                    grid = grid.flatten(1).view(b, t, -1)
                    mean_d.append(mean[:, mid] - mean[:, 0])
                    grid_d.append(grid[:, mid] - grid[:, 0])
            pix = frames.astype(np.float32)
            pix_d = (pix[:, mid] - pix[:, 0]).reshape(len(pix), -1)[:, ::7]
            rows.append((size, "yes" if pretrained else "no (random init)",
                         f"{loso_probe(torch.cat(mean_d).numpy(), y, subjects):.3f}",
                         f"{loso_probe(torch.cat(grid_d).numpy(), y, subjects):.3f}",
                         f"{loso_probe(pix_d, y, subjects):.3f}"))
    show(["S", "pretrained", "mean_patch delta", "grid 4x4 delta", "pixels delta"], rows,
         title=f"LOSO linear-probe UF1, synthetic 3-class, intensity {args.intensity}, "
               f"distractors {'off' if args.no_distractors else 'on'} (chance ~0.33)")


if __name__ == "__main__":
    main()
