"""Training-step throughput: full forward vs the cached frozen trunk (same batch, same config).

    python benchmarks/trunk_cache.py [--sizes 112 224] [--frames 8] [--batch 4] [--steps 3]
                                     [--precisions fp32 bf16] [--threads N]

Both paths run the same optimizer step on the same model and data; the cached path starts from
trunk tokens computed once (that one-off cost is printed separately, per clip). Each precision
is ``train.precision``'s meaning: fp32, or forward passes under bfloat16 autocast (the tokens
are made in fp32 either way, as the platform makes them). ``--threads``: torch's threads (a
fold worker has ``train.cpus_per_fold``, 1 by default; default here: torch's own choice, all
cores). ``--allocator default`` leaves glibc's thresholds as they are (the platform's training
processes keep freed blocks for reuse: mer_ray/fitting/memory.py); the two are separate runs.
Prints clips/s for each and the speed-up.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from mer_ray.console import show
from mer_ray.fitting.loop import autocast, autocast_dtype, fp32
from mer_ray.fitting.memory import reuse_freed_memory
from mer_ray.model import LossConfig, MERLoss, MERNet
from mer_ray.model.variants import variant


def steps_per_second(net, loss_fn, batch_input, labels, steps, cached, precision="fp32"):
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)

    amp = autocast_dtype(precision, "cpu")

    def step():  # as the fold loop's training step: autocast forward, the loss in fp32
        opt.zero_grad()
        with autocast(amp, "cpu"):
            out = net(tokens=batch_input) if cached else net(batch_input)
        loss_fn(fp32(out), labels)["total"].backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lora-blocks", type=int, default=2)
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--allocator", choices=["reuse", "default"], default="reuse",
                   help="reuse: freed blocks kept, as the platform's training processes keep "
                        "them (mer_ray.fitting.memory); default: glibc's own thresholds")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.allocator == "reuse" and not reuse_freed_memory():
        print("the allocator setting did not apply here (not glibc): its own thresholds")
    rows = []
    for size, precision in ((s, pr) for s in args.sizes for pr in args.precisions):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = MERNet(variant("full", pretrained=False, lora_blocks=args.lora_blocks), 3,
                         size).train()
        loss_fn = MERLoss(LossConfig())
        clips = torch.randn(args.batch, args.frames, 3, size, size)
        labels = torch.randint(0, 3, (args.batch,))
        start = time.perf_counter()
        tokens = net.trunk_tokens(clips).half()  # what a cache stores
        cache_cost = (time.perf_counter() - start) / args.batch
        full = steps_per_second(net, loss_fn, clips, labels, args.steps, False, precision)
        cached = steps_per_second(net, loss_fn, tokens, labels, args.steps, True, precision)
        rows.append((size, precision, args.frames, args.batch, f"{full * args.batch:.2f}",
                     f"{cached * args.batch:.2f}", f"{cached / full:.2f}x",
                     f"{cache_cost:.2f}"))
    show(["S", "precision", "T", "batch", "full clips/s", "cached clips/s", "speed-up",
          "trunk s/clip (once)"], rows,
         title=f"ViT-S/14 LoRA (lora_blocks={args.lora_blocks}) training step, "
               f"{torch.get_num_threads()} threads, allocator: {args.allocator}")


if __name__ == "__main__":
    main()
