"""Prediction latency per clip on this machine: reading + face alignment, and the model, apart.

    python benchmarks/predict_latency.py [--sizes 112 224] [--frames 8] [--frame-size 640]
                                         [--repeats 5] [--threads N]

A few synthetic clips (SAMM layout, frames of --frame-size pixels) are predicted with an
untrained model of the default configuration at each S (latency does not depend on the weights).
For each S it prints the median per clip of: reading and aligning the T sampled frames (dlib
detection + landmarks + warp), the model's forward pass in eager PyTorch, and the same through the
torch.export file ``mer-ray export`` writes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mer_ray.config import ExperimentConfig
from mer_ray.console import show
from mer_ray.data.align import AlignGeometry
from mer_ray.data.manifest import build_manifest, included
from mer_ray.data.prepare import PrepareConfig
from mer_ray.data.synth import generate
from mer_ray.data.synth.render import RenderConfig
from mer_ray.model import MERNet
from mer_ray.model.encoder import RANDOM
from mer_ray.model.inputs import clips_to_tensor
from mer_ray.serving.export import export_model, load_exported  # noqa: E402
from mer_ray.serving.modelfile import LoadedModel, make_checkpoint  # noqa: E402
from mer_ray.serving.predict import read_aligned_clip  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (dlib model load, first-call allocations)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--frame-size", type=int, default=640, help="synthetic recording frame size")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        root = Path(tmp) / "synth"
        generate(root, "samm", subjects=1, clips_per_class=1, seed=3, progress=False,
                 render=RenderConfig(frame_size=args.frame_size))
        clips = included(build_manifest("samm", root, "3class")).to_dicts()
        for size in args.sizes:
            exp = ExperimentConfig().with_values({"data.size": size, "model.pretrained": False})
            net = MERNet(exp.model, 3, size, RANDOM).eval()
            pre = PrepareConfig(frames=args.frames, size=size, geometry=AlignGeometry())
            model = LoadedModel(net, exp, ["negative", "positive", "surprise"], pre,
                                make_checkpoint(net, exp, ["negative", "positive", "surprise"],
                                                pre, {"benchmark": "untrained"}))
            model.meta.pop("state_dict")

            def align(row=clips[0], pre=pre):
                return read_aligned_clip(row["source"], pre, row["onset"], row["offset"])

            t_align = statistics.median(median_seconds(lambda r=r: align(r), args.repeats)
                                        for r in clips)
            x = clips_to_tensor(align()["frames"][None])
            with torch.no_grad():
                t_model = median_seconds(lambda net=net, x=x: net(x), args.repeats)
            out = Path(tmp) / f"m{size}.pt2"
            export_model(model, out)
            mod, _ = load_exported(out)
            frames = torch.from_numpy(align()["frames"][None])
            with torch.no_grad():
                t_export = median_seconds(lambda mod=mod, f=frames: mod(f), args.repeats)
            rows.append((size, args.frames, f"{1000 * t_align:.0f}", f"{1000 * t_model:.0f}",
                         f"{1000 * t_export:.0f}",
                         f"{1000 * (t_align + t_model):.0f}"))
    show(["S", "T", "read + align ms", "model ms (eager)", "model ms (exported)",
          "total ms (eager)"], rows,
         title=f"per clip, median of {args.repeats}; {args.frame_size}x{args.frame_size} "
               f"frames, vit_small, CPU threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
