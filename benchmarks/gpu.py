"""The paper-scale path on one GPU: memory, speed, mixed precision, packing, determinism, and
prediction latency, in one run that prints one table and writes JSON.

    python benchmarks/gpu.py [--out gpu.json] [--epochs 8]     # on a GPU machine (< 8 min)
    python benchmarks/gpu.py --cpu                             # a tiny version of every step

On a GPU (ViT-B/14, S = 224, T = 8, batch 16, synthetic clips):

1. peak allocated GPU memory of a training step, LoRA vs full fine-tuning, fp32 and bf16, and
   the trainable parameters (the paper's Table 7: 7.2 GB with LoRA, 10.8 GB full);
2. training clips/s with the frozen trunk recomputed every step vs cached, fp32 and bf16;
3. a synthetic LOSO (8 subjects x 4 clips x 3 classes, the demo's counts, at S = 224) end to
   end through Ray on the GPU: wall time, each fold's fixed cost (fold start -> first step,
   last step -> results), GPU utilisation sampled with nvidia-smi, and folds/hour with one fold
   per GPU (train.gpus_per_fold=1) and four packed on it (0.25);
4. determinism: the packed LOSO run twice with train.deterministic: identical predictions, or
   the largest probability difference;
5. prediction latency per clip on the GPU: the eager model and the torch.export program.

The backbone is randomly initialised (the machine cannot reach a hub): these are speed and
memory figures, not accuracy. With ``--cpu`` (or no GPU) every step runs at a tiny size (ViT-S,
S = 28, T = 2, batch 2, 3 subjects of which 2 are test folds, 1 epoch, one fold slot) so the
tests keep the script working; there, without a GPU to share, one fold per GPU and four per GPU
are the same computation, so step 4 compares those two runs instead of running the packed one
a second time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from mer_ray.console import show  # noqa: E402


def sizes(cpu: bool) -> dict:
    if cpu:
        # one fold slot: on 2 cores, starting two slots' Train runs costs more than it saves
        return {"backbone": "vit_small_patch14_dinov2", "size": 28, "frames": 2, "batch": 2,
                "subjects": 3, "clips": 1, "steps": 2, "epochs": 1, "max_slots": 1,
                "max_folds": 2}
    return {"backbone": "vit_base_patch14_dinov2", "size": 224, "frames": 8, "batch": 16,
            "subjects": 8, "clips": 4, "steps": 10, "epochs": 8}


def model_config(sz: dict, **kw):
    from mer_ray.config import ExperimentConfig

    over = [f"model.backbone={sz['backbone']}", f"data.size={sz['size']}",
            f"data.frames={sz['frames']}",
            "model.pretrained=false", "model.frame_feature=cls"]
    over += [f"{k.replace('__', '.')}={v}" for k, v in kw.items()]
    return ExperimentConfig().with_overrides(over)


def step_memory_and_speed(sz: dict, device: torch.device) -> list[dict]:
    """Steps 1 and 2: peak memory of a training step and clips/s, per setting."""
    from mer_ray.fitting.loop import autocast, training_step
    from mer_ray.model import MERLoss
    from mer_ray.model.build import build_model
    from mer_ray.model.encoder import RANDOM

    rows = []
    b, t, s = sz["batch"], sz["frames"], sz["size"]
    gen = torch.Generator().manual_seed(0)
    clips = torch.randn(b, t, 3, s, s, generator=gen).to(device)
    labels = torch.randint(0, 3, (b,), generator=gen).to(device)
    def measure(finetune: str, precision: str, cached: bool) -> dict:
        exp = model_config(sz, model__finetune=finetune)
        net = build_model(exp, 3, RANDOM).to(device).train()
        amp = torch.bfloat16 if precision == "bf16" else None
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
        loss_fn = MERLoss(exp.loss).to(device)
        inputs = {"clips": clips}
        if cached:
            with torch.no_grad(), autocast(amp, device):
                inputs = {"tokens": net.trunk_tokens(clips).half()}

        def step():  # the training loop's own step
            training_step(net, opt, loss_fn, inputs, labels, amp)

        step()  # the optimizer state exists from here on: it counts in the peak below
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        step()
        peak = None
        if device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**30
        start = time.perf_counter()
        for _ in range(sz["steps"]):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = b * sz["steps"] / (time.perf_counter() - start)
        total, trainable = net.parameter_counts()
        return {"finetune": finetune, "precision": precision,
                "trunk": "cached" if cached else "recomputed", "peak_gb": peak,
                "clips_per_s": rate, "trainable_params": trainable, "params": total}

    for setting in [("lora", "fp32", False), ("lora", "bf16", False), ("full", "fp32", False),
                    ("full", "bf16", False), ("lora", "fp32", True), ("lora", "bf16", True)]:
        rows.append(measure(*setting))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


class GpuSampler:
    """Mean GPU utilisation (nvidia-smi, every 0.5 s) while it runs."""

    def __init__(self):
        self.samples, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True,
                                     text=True, timeout=5).stdout.split()
                self.samples += [float(x) for x in out]
            except (OSError, subprocess.SubprocessError, ValueError):
                return
            self.stop.wait(0.5)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)

    @property
    def mean(self):
        return statistics.mean(self.samples) if self.samples else None


def loso_runs(sz: dict, work: Path, gpu: bool) -> tuple[list[dict], dict]:
    """Steps 3 and 4: the synthetic LOSO through Ray, one fold per GPU and four per GPU (twice,
    for determinism)."""
    from mer_ray.config import DataConfig
    from mer_ray.data.choice import ensure_shards
    from mer_ray.data.synth import generate
    from mer_ray.protocols.loso import plan_loso, shared_tokens, train_folds
    from mer_ray.protocols.summary import summarise_run
    from mer_ray.train.slots import fold_slots

    generate(work / "synth", "samm", sz["subjects"], sz["clips"], "3class", seed=0,
             progress=False)
    shards = ensure_shards("samm", work / "synth", "3class",
                           DataConfig(frames=sz["frames"], size=sz["size"]), work,
                           synthetic=True)
    rows, preds = [], {}
    runs = [("1 fold per GPU", 1.0), ("4 folds per GPU", 0.25)]
    if gpu:
        runs.append(("4 folds per GPU, again", 0.25))
    else:  # without a GPU the shares are one computation: the second run is in this process,
        # which checks Ray's fold workers against the plain loop and saves a Train run
        runs[1] = ("in this process", 0.25)
    for label, share in runs:
        exp = model_config(sz, train__cache_trunk="true", train__max_epochs=sz["epochs"],
                           train__patience=sz["epochs"], train__gpus_per_fold=share,
                           train__use_gpu="true" if gpu else "false",
                           train__max_concurrent_folds=sz.get("max_slots", 0))
        name = label.replace(" ", "-").replace(",", "")
        setup = plan_loso(shards, exp, work / "runs", name=name, max_folds=sz.get("max_folds"))
        shared_tokens(setup, gpu, fold_slots(exp.train, gpu))  # made before timing
        start = time.perf_counter()
        with GpuSampler() as util:
            train_folds(setup, local=label == "in this process")
        wall = time.perf_counter() - start
        summary = summarise_run(setup.view())
        recs = [setup.folder.read_fold(f.test) for f in setup.folds]
        preds[label] = {f.test: r[1].probs for f, r in zip(setup.folds, recs)}
        rows.append({"run": label, "gpus_per_fold": share, "slots": fold_slots(exp.train, gpu),
                     "folds": len(setup.folds), "wall_s": wall,
                     "folds_per_hour": 3600 * len(setup.folds) / wall,
                     "setup_s": statistics.mean(r[0].timing["setup_s"] for r in recs),
                     "finish_s": statistics.mean(r[0].timing["finish_s"] for r in recs),
                     "gpu_util_pct": util.mean, "uf1": summary["metrics"]["uf1"],
                     "device": recs[0][0].device})
    a, b = (preds[label] for label, _ in runs[-2:])
    diff = max(abs(x - y) for s in a for p, q in zip(a[s], b[s]) for x, y in zip(p, q))
    return rows, {"identical": diff == 0.0, "max_prob_diff": diff,
                  "compared": [label for label, _ in runs[-2:]]}


def predict_latency(sz: dict, device: torch.device, repeats: int = 20) -> dict:
    """Step 5: model time per clip, eager and torch.export, on the device."""
    from mer_ray.model.build import build_model
    from mer_ray.model.encoder import RANDOM
    from mer_ray.serving.export import ExportedMER

    exp = model_config(sz)
    net = build_model(exp, 3, RANDOM).to(device).eval()
    frames = torch.randint(0, 255, (1, sz["frames"], sz["size"], sz["size"], 3),
                           dtype=torch.uint8).to(device)
    wrapped = ExportedMER(net).to(device).eval()

    def timed(fn):
        with torch.no_grad():
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    eager = timed(lambda: wrapped(frames))
    program = torch.export.export(wrapped, (frames,)).module()
    exported = timed(lambda: program(frames))
    return {"eager_ms": 1000 * eager, "exported_ms": 1000 * exported}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU")
    p.add_argument("--out", type=Path, default=Path("gpu.json"))
    p.add_argument("--epochs", type=int, default=None, help="LOSO epochs per fold")
    args = p.parse_args()
    gpu = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if gpu else "cpu")
    sz = sizes(not gpu)
    if args.epochs:
        sz["epochs"] = args.epochs
    os.environ.setdefault("RAY_TMPDIR", "/tmp/merray")
    name = torch.cuda.get_device_name(0) if gpu else "CPU (tiny sizes)"
    t0 = time.perf_counter()
    steps = step_memory_and_speed(sz, device)
    import ray

    from mer_ray.cluster import ensure_ray

    with tempfile.TemporaryDirectory(prefix="mergpu-") as tmp:
        ensure_ray(log_file=Path(tmp) / "ray.log")
        runs, determinism = loso_runs(sz, Path(tmp), gpu)
        ray.shutdown()
    latency = predict_latency(sz, device)
    result = {"device": name, "sizes": sz, "steps": steps, "loso": runs,
              "determinism": determinism, "predict": latency,
              "seconds": time.perf_counter() - t0, "torch": torch.__version__}
    args.out.write_text(json.dumps(result, indent=1))

    def gb(v):
        return "-" if v is None else f"{v:.2f}"

    show(["finetune", "precision", "trunk", "peak GB", "clips/s", "trainable M"],
         [(r["finetune"], r["precision"], r["trunk"], gb(r["peak_gb"]),
           f"{r['clips_per_s']:.1f}", f"{r['trainable_params'] / 1e6:.2f}") for r in steps],
         title=f"{name}: {sz['backbone']}, S={sz['size']}, T={sz['frames']}, batch "
               f"{sz['batch']} (paper Table 7: 7.2 GB LoRA, 10.8 GB full fine-tuning)")
    show(["LOSO", "slots", "wall s", "folds/hour", "fold start->step s", "step->results s",
          "GPU util %", "UF1"],
         [(r["run"], r["slots"], f"{r['wall_s']:.0f}", f"{r['folds_per_hour']:.0f}",
           f"{r['setup_s']:.2f}", f"{r['finish_s']:.2f}",
           "-" if r["gpu_util_pct"] is None else f"{r['gpu_util_pct']:.0f}", f"{r['uf1']:.3f}")
          for r in runs],
         title=f"synthetic LOSO through Ray, {runs[0]['folds']} folds, {sz['epochs']} epochs, "
               f"random-init backbone; packing speed-up "
               f"{runs[1]['folds_per_hour'] / runs[0]['folds_per_hour']:.2f}x")
    print(f"determinism (train.deterministic, {' vs '.join(determinism['compared'])}): "
          f"{'identical predictions' if determinism['identical'] else 'DIFFERENT'} (largest "
          f"probability difference {determinism['max_prob_diff']:.2e})")
    print(f"predict, model per clip: eager {latency['eager_ms']:.1f} ms, exported "
          f"{latency['exported_ms']:.1f} ms; all of this took {result['seconds']:.0f} s; "
          f"JSON: {args.out}")


if __name__ == "__main__":
    main()
