"""Training-step throughput: full forward vs the cached frozen trunk (same batch, same config).

    python benchmarks/trunk_cache.py [--sizes 112 224] [--frames 8] [--batch 4] [--steps 3]

Both paths run the same optimizer step on the same model and data; the cached path starts from
trunk tokens computed once (that one-off cost is printed separately, per clip). Prints clips/s
for each and the speed-up.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from mer_ray.console import show
from mer_ray.model import LossConfig, MERLoss, MERNet
from mer_ray.model.variants import variant


def steps_per_second(net, loss_fn, batch_input, labels, steps, cached):
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad()
        out = net(tokens=batch_input) if cached else net(batch_input)
        loss_fn(out, labels)["total"].backward()
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
    args = p.parse_args()
    rows = []
    for size in args.sizes:
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
        full = steps_per_second(net, loss_fn, clips, labels, args.steps, cached=False)
        cached = steps_per_second(net, loss_fn, tokens, labels, args.steps, cached=True)
        rows.append((size, args.frames, args.batch, f"{full * args.batch:.2f}",
                     f"{cached * args.batch:.2f}", f"{cached / full:.1f}x",
                     f"{cache_cost:.2f}"))
    show(["S", "T", "batch", "full clips/s", "cached clips/s", "speed-up",
          "trunk s/clip (once)"], rows,
         title=f"ViT-S/14 LoRA (lora_blocks={args.lora_blocks}) training step, "
               f"{torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
