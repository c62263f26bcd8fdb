"""Prepare throughput: aligned frames per second with 1 and with 2 Ray Data workers.

    python benchmarks/prepare_throughput.py [--subjects 6] [--clips-per-class 2] [--size 224]

Builds a synthetic SAMM-layout set, runs ``prepare_shards`` once untimed (Ray Data start-up and
each worker loading dlib's models would otherwise be charged to whichever count runs first),
then once per worker count on the same manifest (fresh output each time), and prints a table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mer_ray.cluster import ensure_ray
from mer_ray.console import show
from mer_ray.data.labels import class_names
from mer_ray.data.manifest import build_manifest
from mer_ray.data.prepare import PrepareConfig, prepare_shards
from mer_ray.data.synth import generate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--clips-per-class", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    os.environ.setdefault("RAY_TMPDIR", "/tmp/merray")
    with tempfile.TemporaryDirectory(prefix="merbench-") as tmp:
        tmp = Path(tmp)
        generate(tmp / "data", "samm", args.subjects, args.clips_per_class, "3class", seed=0)
        manifest = build_manifest("samm", tmp / "data", "3class")
        ensure_ray(num_cpus=os.cpu_count())
        cfg = PrepareConfig(frames=args.frames, size=args.size)
        rows = []
        prepare_shards(manifest, tmp / "warmup", cfg, class_names=class_names("samm", "3class"),
                       workers=max(args.workers))
        for w in args.workers:
            start = time.perf_counter()
            res = prepare_shards(manifest, tmp / f"shards{w}", cfg,
                                 class_names=class_names("samm", "3class"), workers=w)
            wall = time.perf_counter() - start
            rows.append((w, res.clips, res.frames_aligned, f"{wall:.1f}",
                         f"{res.frames_aligned / wall:.1f}"))
    show(["workers", "clips", "frames", "seconds", "frames/s"], rows,
         title=f"prepare throughput, {os.cpu_count()} CPUs, T={args.frames}, S={args.size}")


if __name__ == "__main__":
    main()
