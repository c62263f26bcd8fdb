"""How close each method's fold step comes to what this machine's cores can compute.

    python benchmarks/roofline.py [--shards DIR] [--workdir /tmp/merroofline] [--epochs 3]
                                  [--precisions fp32,bf16] [--out roofline.json]

1. The machine's matrix-multiply rates: the largest float32 and bfloat16 GEMM throughput torch
   reaches (square matrices of 256 to 2048), on one thread (what a fold worker has:
   train.cpus_per_fold is 1) and on all cores. (A CPU with bf16 matrix units, AMX, multiplies
   bfloat16 matrices several times faster than float32 ones.)
2. Each method (the paper's model with the demo's configuration and its trunk cache, LBP-TOP +
   SVM, STSTNet, OFF-ApexNet) trains one fold of the demo's synthetic set (or ``--shards``,
   prepared with flow) for ``--epochs`` epochs in this process, with each ``train.precision``
   of ``--precisions`` (fp32; bf16: forward passes under bfloat16 autocast), three times, the
   same work each time (same seed):
   - timed plainly: the fold's wall seconds;
   - under torch's FLOP counter (``torch.utils.flop_counter``, not by hand): every floating-
     point operation of the fold (training steps forward and backward, validation and test
     predictions), and, through autograd's saved-tensor hooks, the bytes of activations the
     training steps keep for their backward pass;
   - under torch's profiler (input shapes not recorded: recording them slows the operators
     several times over): the time spent inside torch operators (the rest of the wall time is
     Python, data handling, the optimiser's bookkeeping outside operators, records), the
     operators that took most of it, and the matrix products' share (their FLOPs from the
     counter, their seconds from the profile).
   Achieved rate = FLOPs / wall seconds (data loading included) and FLOPs / operator seconds
   (excluded); the roofline ratio compares them with the one-thread GEMM rate of the dtype the
   products ran in.

The paper model's trunk tokens are made once per run before its folds (the trunk cache): they
are timed and counted apart, as "shared". LBP-TOP + SVM computes with numpy and scikit-learn,
which torch's counter does not see: its FLOPs are not counted, its time is.
Prints one table and writes ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from mer_ray.console import show  # noqa: E402

METHODS = ("mer", "ststnet", "offapexnet", "lbptop_svm")


def gemm_rate(threads: int, sizes=(256, 512, 1024, 2048), seconds: float = 0.6,
              dtype=torch.float32) -> dict:
    """The best ``dtype`` matmul GFLOP/s over ``sizes`` with ``threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = {}
    try:
        for n in sizes:
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            a @ b  # warm-up
            reps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                a @ b
                reps += 1
            rate = 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9
            best[n] = rate
    finally:
        torch.set_num_threads(before)
    return {"threads": threads, "dtype": str(dtype).replace("torch.", ""),
            "gflops_by_size": best, "gflops": max(best.values())}


def demo_shards(workdir: Path):
    """The demo's synthetic set, aligned with TV-L1 flow at the demo's frame settings."""
    from mer_ray.cluster import ensure_ray
    from mer_ray.data.choice import DataChoice
    from mer_ray.methods import load_with_recipe

    ensure_ray(num_cpus=os.cpu_count())
    exp = load_with_recipe(REPO / "experiments/configs/demo.yaml", {"data.flow": "tvl1"})
    return DataChoice("samm", "3class", workdir=workdir / "data").prepare(exp.data)


def _config(method: str, epochs: int, precision: str = "fp32"):
    from mer_ray.methods import load_with_recipe

    return load_with_recipe(REPO / "experiments/configs/demo.yaml",
                            {"model.method": method, "data.flow": "tvl1",
                             "train.max_epochs": epochs, "train.patience": epochs,
                             "train.precision": precision})


def one_fold(shards, method: str, epochs: int, runs: Path, name: str, precision: str = "fp32"):
    """Plan the run's first fold; its shared inputs (trunk tokens) made and timed first."""
    from mer_ray.protocols.loso import plan_loso, shared_tokens

    run = plan_loso(shards, _config(method, epochs, precision), runs, name, max_folds=1)
    start = time.perf_counter()
    tokens = shared_tokens(run, False, 1)
    return run, tokens, time.perf_counter() - start


def train_once(run, tokens) -> float:
    from mer_ray.train.jobs import loso_jobs
    from mer_ray.train.runner import run_jobs

    torch.set_num_threads(1)  # a fold worker's one CPU (train.cpus_per_fold)
    start = time.perf_counter()
    run_jobs(lambda: loso_jobs(run.plan(tokens), run.folds), run.exp.train, local=True,
             title=run.name, use_gpu=False)
    return time.perf_counter() - start


GEMMS = ("aten::mm", "aten::addmm", "aten::bmm")


def gemm_part(prof, counter) -> dict:
    """The fold's matrix products (``mm``, ``addmm``, ``bmm``): their FLOPs as torch's FLOP
    counter counted them, their seconds in the profile, the rate, and their share of operator
    time. (The profile records no input shapes: recording them slows every operator it sees,
    element-wise ones several times over, and would distort the account.)"""
    counts = counter.get_flop_counts().get("Global", {})
    flops = sum(v for k, v in counts.items() if f"aten::{str(k).split('.')[-1]}" in GEMMS)
    t = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in GEMMS) / 1e6
    return {"gemm_s": t, "gemm_gflop": flops / 1e9,
            "gemm_gflops": flops / 1e9 / t if t else None}


def measure(shards, method: str, epochs: int, runs: Path, precision: str = "fp32") -> dict:
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    tag = f"{method}-{precision}"
    run, tokens, shared_s = one_fold(shards, method, epochs, runs, f"{tag}-timed", precision)
    wall = train_once(run, tokens)
    rec, _ = run.folder.read_fold(run.folds[0].test)
    fold = run.folds[0]
    train_clips = sum(shards.label_counts(fold.train))
    steps = rec.epochs_run * -(-train_clips // run.exp.train.batch_size)

    run2, tokens2, _ = one_fold(shards, method, epochs, runs, f"{tag}-counted", precision)
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with FlopCounterMode(display=False) as counter, \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        train_once(run2, tokens2)
    flops = counter.get_total_flops()

    run3, tokens3, _ = one_fold(shards, method, epochs, runs, f"{tag}-profiled", precision)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_once(run3, tokens3)
    events = prof.key_averages()
    op_us = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::"))
    top = sorted((e for e in events if e.key.startswith("aten::")),
                 key=lambda e: -e.self_cpu_time_total)[:6]
    params = run.method.parameters(run.exp, len(shards.class_names))
    return {
        "method": method, "precision": precision, "epochs": rec.epochs_run,
        "train_clips": train_clips, "train_steps": steps, "trainable_params": params,
        "param_bytes_per_step": 4 * params * 4,  # weights, gradients and Adam's two moments
        "fold_wall_s": wall, "shared_s": shared_s, "fold_gflop": flops / 1e9,
        "gflop_per_train_clip_epoch": flops / 1e9 / max(rec.epochs_run * train_clips, 1),
        "activation_mb_per_step": saved[0] / 2**20 / max(steps, 1),
        "operator_s": op_us / 1e6, "outside_operators_s": max(wall - op_us / 1e6, 0.0),
        "top_operators": [(e.key, round(e.self_cpu_time_total / 1e6, 3)) for e in top],
        "counted": method != "lbptop_svm", "test_uf1": rec.test_uf1,
        **gemm_part(prof, counter),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=Path, default=None,
                   help="shards with flow (default: the demo's synthetic set, prepared here)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/merroofline"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--precisions", default="fp32,bf16",
                   help="train.precision values each network method runs with")
    p.add_argument("--out", type=Path, default=Path("roofline.json"))
    args = p.parse_args()
    import shutil

    from mer_ray.data.shards import Shards

    runs = args.workdir / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    cores = os.cpu_count() or 1
    gemm = {dt: [gemm_rate(1, dtype=getattr(torch, name)), gemm_rate(cores, dtype=getattr(
        torch, name))] for dt, name in (("fp32", "float32"), ("bf16", "bfloat16"))}
    for dt, (one, every) in gemm.items():
        print(f"GEMM {dt}: {one['gflops']:.1f} GFLOP/s on 1 thread, {every['gflops']:.1f} on "
              f"{every['threads']}", flush=True)
    shards = Shards.open(args.shards) if args.shards else demo_shards(args.workdir)
    results = []
    for method in args.methods.split(","):
        for precision in args.precisions.split(","):
            if method == "lbptop_svm" and precision != "fp32":
                continue  # numpy and scikit-learn: no autocast
            r = measure(shards, method, args.epochs, runs, precision)
            results.append(r)
            print(f"{method} {precision}: {r['fold_wall_s']:.1f} s, {r['fold_gflop']:.1f} GFLOP",
                  flush=True)
    show(["method", "precision", "trainable params", "GFLOP per clip-epoch",
          "activations MB/step", "fold s", "in operators s", "GFLOP/s (wall)",
          "GFLOP/s (operators)", "of 1-thread GEMM (same dtype)", "its matrix products: s, "
          "rate, share", "top operators"], [_row(r, gemm) for r in results],
         title=f"one fold, {args.epochs} epochs, 1 thread; GEMM peak on 1 thread: fp32 "
               f"{gemm['fp32'][0]['gflops']:.1f}, bf16 {gemm['bf16'][0]['gflops']:.1f} GFLOP/s "
               f"(on {cores}: {gemm['fp32'][1]['gflops']:.1f}, {gemm['bf16'][1]['gflops']:.1f})")
    args.out.write_text(json.dumps({"gemm": gemm, "methods": results}, indent=1, default=str))
    print(f"written: {args.out}")


def _row(r: dict, gemm: dict) -> tuple:
    peak = gemm[r["precision"]][0]["gflops"]
    wall_rate = r["fold_gflop"] / r["fold_wall_s"] if r["counted"] else None
    op_rate = r["fold_gflop"] / r["operator_s"] if r["counted"] and r["operator_s"] else None
    r.update(gflops_wall=wall_rate, gflops_operators=op_rate, gemm_peak=peak,
             roofline_wall=None if wall_rate is None else wall_rate / peak,
             roofline_operators=None if op_rate is None else op_rate / peak)
    return (r["method"], r["precision"], f"{r['trainable_params']:,}",
            f"{r['gflop_per_train_clip_epoch']:.3f}" if r["counted"] else "n/a",
            f"{r['activation_mb_per_step']:.1f}", f"{r['fold_wall_s']:.1f}",
            f"{r['operator_s']:.1f}", "n/a" if wall_rate is None else f"{wall_rate:.2f}",
            "n/a" if op_rate is None else f"{op_rate:.2f}",
            "n/a" if wall_rate is None else f"{100 * wall_rate / peak:.1f} %",
            _gemm_text(r, peak),
            ", ".join(f"{k[6:]} {v:.1f}s" for k, v in r["top_operators"][:3]))


def _gemm_text(r: dict, peak: float) -> str:
    """The fold's matrix multiplies: seconds, their rate against the GEMM peak, and their share
    of the fold's operator time (the rest is what a faster step would have to cut)."""
    if not r["counted"] or not r.get("gemm_s"):
        return "n/a"
    return (f"{r['gemm_s']:.1f} s, {r['gemm_gflops']:.0f} GFLOP/s "
            f"({100 * r['gemm_gflops'] / peak:.0f} %), "
            f"{100 * r['gemm_s'] / max(r['operator_s'], 1e-9):.0f} % of operator time")


if __name__ == "__main__":
    main()
