"""What Ray costs: the same tiny LOSO through Ray (Tune trials -> one-worker TorchTrainers) and
through a plain loop in this process.

    python benchmarks/ray_overhead.py [--folds 4] [--epochs 3] [--size 56]

Both runs train the same folds from the same aligned shards with the same configuration and
write the same fold records; the in-process loop reads the Parquet shards directly. Prints both
wall times, their ratio, ``ray.init`` separately (a cluster pays it once, not per run), and the
UF1 of both runs (they should agree: same seeds, same data order).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.console import show  # noqa: E402
from mer_ray.data.synth import generate  # noqa: E402
from mer_ray.experiment import ensure_shards  # noqa: E402
from mer_ray.train.config import ExperimentConfig  # noqa: E402
from mer_ray.train.local import run_folds_local  # noqa: E402
from mer_ray.train.loso import plan_loso, run_folds  # noqa: E402
from mer_ray.train.results import summarise  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--size", type=int, default=56)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--cache-trunk", action="store_true", help="train from cached trunk tokens")
    args = p.parse_args()
    os.environ.setdefault("RAY_TMPDIR", "/tmp/merray")
    warnings.simplefilter("ignore")  # random-init backbone: both runs alike; the table says so
    import ray

    exp = ExperimentConfig().with_overrides([
        f"model.image_size={args.size}", "model.pretrained=false", f"train.max_epochs={args.epochs}",
        "train.val_subjects=1", "train.batch_size=4", f"train.cache_trunk={args.cache_trunk}",
        # one fold at a time on every CPU, as the plain loop runs
        f"train.cpus_per_fold={os.cpu_count()}", "train.max_concurrent_folds=1",
    ])
    with tempfile.TemporaryDirectory(prefix="meroverhead-") as tmp:
        tmp = Path(tmp)
        generate(tmp / "synth", "samm", max(args.folds, 3), 1, "3class", seed=0, progress=False)
        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t
        shards = ensure_shards("samm", tmp / "synth", "3class", args.frames, args.size, tmp,
                               synthetic=True)
        timings = {}
        for label, runner in (("plain loop", run_folds_local),
                              ("Ray", run_folds)):
            setup = plan_loso(shards, exp, tmp / "runs", name=label.replace(" ", "-"),
                              max_folds=args.folds)
            t = time.perf_counter()
            runner(setup)
            timings[label] = (time.perf_counter() - t, summarise(setup)["metrics"])
        ray.shutdown()
    (local_s, local_m), (ray_s, ray_m) = timings["plain loop"], timings["Ray"]
    show(["run", "wall s", "UF1 (aggregate)"],
         [("plain in-process loop", f"{local_s:.1f}", f"{local_m['uf1']:.3f}"),
          ("Ray (Tune + TorchTrainer)", f"{ray_s:.1f}", f"{ray_m['uf1']:.3f}"),
          ("ratio Ray / plain", f"{ray_s / local_s:.2f}", ""),
          ("ray.init (once per session)", f"{init_s:.1f}", "")],
         title=f"{args.folds}-fold tiny LOSO, S={args.size}, T={args.frames}, {args.epochs} "
               f"epochs, one fold at a time, {os.cpu_count()} CPUs, random-init backbone")


if __name__ == "__main__":
    main()
