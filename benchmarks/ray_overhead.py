"""What Ray costs: the same LOSO through the fold runner on Ray Train workers and in a plain loop
in this process, both using every core.

    python benchmarks/ray_overhead.py            # demo size: 8 folds, experiments/configs/demo.yaml
    python benchmarks/ray_overhead.py --tiny     # 4 folds, S=56, T=4, 3 epochs

Both runs train the same folds from the same shards and shared trunk tokens (computed once
before either is timed), with the same configuration, and write the same fold records. The
plain loop trains one fold at a time with all cores' threads; Ray trains one fold per slot
(``train.cpus_per_fold`` CPUs each), as many slots as there are cores. Prints both wall times
and their ratio, the Ray run's start-up (from the call to its first fold starting), each run's
per-fold fixed cost (from a fold's start to its first training step, and from its last step
to its results), ``ray.init`` separately (a cluster pays it once, not per run), and both UF1s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mer_ray.config import load_experiment  # noqa: E402
from mer_ray.console import show  # noqa: E402
from mer_ray.data.choice import SYNTH_INTENSITY, SYNTH_SIZE, ensure_shards  # noqa: E402
from mer_ray.data.synth import generate  # noqa: E402
from mer_ray.data.synth.render import RenderConfig  # noqa: E402
from mer_ray.protocols.loso import plan_loso, shared_tokens, train_folds  # noqa: E402
from mer_ray.protocols.summary import summarise_run  # noqa: E402


def fixed_costs(summary: dict) -> tuple[str, str]:
    setup = [f["timing"]["setup_s"] for f in summary["folds"]]
    finish = [f["timing"]["finish_s"] for f in summary["folds"]]
    return (f"{statistics.mean(setup):.2f} (max {max(setup):.2f})",
            f"{statistics.mean(finish):.2f} (max {max(finish):.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="4 folds, S=56, T=4, 3 epochs")
    p.add_argument("--workdir", type=Path, default=None, help="keep the set and runs here")
    args = p.parse_args()
    os.environ.setdefault("RAY_TMPDIR", "/tmp/merray")
    warnings.simplefilter("ignore")  # random-init backbone: both runs alike; the table says so
    import ray

    cpus = os.cpu_count() or 1
    if args.tiny:
        exp = load_experiment(None, ["data.size=56", "data.frames=4", "model.pretrained=false",
                                     "train.max_epochs=3", "train.val_subjects=1",
                                     "train.batch_size=4", "train.cache_trunk=true"])
        subjects, clips, intensity = 4, 1, 1.0
    else:
        exp = load_experiment(REPO / "experiments" / "configs" / "demo.yaml")
        (subjects, clips), intensity = SYNTH_SIZE, SYNTH_INTENSITY
    frames = exp.data.frames
    with tempfile.TemporaryDirectory(prefix="meroverhead-") as tmp:
        work = args.workdir or Path(tmp)
        if not (work / "synth" / "synth.json").is_file():
            generate(work / "synth", "samm", subjects, clips, "3class", seed=0, progress=False,
                     render=RenderConfig(intensity=intensity))
        t = time.perf_counter()
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t
        shards = ensure_shards("samm", work / "synth", "3class", exp.data,
                               work, synthetic=True)
        timings = {}
        for label, local in (("plain loop", True), ("Ray", False)):
            # the plain loop trains one fold at a time with every core, the Ray slots one fold
            # each with one core
            run_exp = exp.with_values({"train.cpus_per_fold": cpus}) if local else exp
            setup = plan_loso(shards, run_exp, work / "runs",
                              name=f"{label.replace(' ', '-')}-{time.strftime('%H%M%S')}")
            shared_tokens(setup, False, cpus)  # the same tokens for both, made before timing
            t, clock = time.perf_counter(), time.time()
            train_folds(setup, local=local)
            wall = time.perf_counter() - t
            summary = summarise_run(setup.view())
            first = min(setup.folder.read_fold(f.test)[0].started_at for f in setup.folds)
            timings[label] = (wall, summary, first - clock)
        ray.shutdown()
    (local_s, local_sum, _), (ray_s, ray_sum, ray_start) = timings["plain loop"], timings["Ray"]
    ls, lf = fixed_costs(local_sum)
    rs, rf = fixed_costs(ray_sum)
    show(["run", "wall s", "fold start -> first step s", "last step -> results s",
          "UF1 (aggregate)"],
         [("plain in-process loop", f"{local_s:.1f}", ls, lf, f"{local_sum['metrics']['uf1']:.3f}"),
          ("Ray (Train workers, one per slot)", f"{ray_s:.1f}", rs, rf,
           f"{ray_sum['metrics']['uf1']:.3f}"),
          ("ratio Ray / plain", f"{ray_s / local_s:.2f}", "", "", "")],
         title=f"{len(local_sum['folds'])}-fold LOSO, S={exp.data.size}, T={frames}, "
               f"{exp.train.max_epochs} epochs max, {cpus} CPUs, random-init backbone "
               f"({'tiny' if args.tiny else 'demo settings'})")
    print(f"Ray start-up (call to first fold start, once per run): {ray_start:.1f} s; "
          f"ray.init (once per session): {init_s:.1f} s")


if __name__ == "__main__":
    main()
