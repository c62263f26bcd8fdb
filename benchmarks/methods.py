"""Every method on the same folds, honest and leaky, over several training seeds, with
shuffled-label controls, on the demo set and on synthetic sets no setting was chosen on; and how
long each baseline's LOSO takes.

    python benchmarks/methods.py [--workdir /tmp/mermethods] [--sets 0 60 61 62] [--seeds 3]
                                 [--control-seeds 1] [--keep]

For each synthetic set (set 0 is the demo's own; 60, 61 and 62 took no part in choosing any
setting, of the demo or of a method), ``mer-ray compare --seeds N`` runs the paper's model
(``experiments/configs/demo.yaml``), LBP-TOP + SVM, STSTNet and OFF-ApexNet (each with its own
recipe on top of that file: frames, size and seed stay the demo's) with N training seeds, with
``--with-leaky`` (each method also with each fold's epoch chosen on its test subject), on
shards with TV-L1 flow; then the same with every fold's training and validation labels
shuffled (``train.shuffle_labels``; ``--control-seeds`` training seeds): an honest method must
score near chance there (UF1 <= 0.45 for 3 classes), while the leaky protocol, which picks
among its epochs on the test subject, scores above it. Then LBP-TOP + SVM and STSTNet each run alone as ``mer-ray train`` on the demo
set (their shards already prepared): the command's wall time, Ray start-up included, and the
folds' compute seconds.

Prints one table and writes ``methods.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mer_ray.console import show  # noqa: E402

METHODS = "mer,lbptop_svm,ststnet,offapexnet"


def mer_ray(workdir: Path, log: Path, *args: str) -> float:
    cmd = [sys.executable, "-m", "mer_ray", *args, "--config", "experiments/configs/demo.yaml",
           "--workdir", str(workdir / "data"), "--storage-path", str(workdir / "runs")]
    start = time.perf_counter()
    with open(log, "a") as fh:
        print("$", " ".join(cmd[2:]), file=fh, flush=True)
        subprocess.run(cmd, cwd=REPO, check=True, stdout=fh, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def compare(workdir: Path, log: Path, seed: int, control: bool, seeds: int) -> dict:
    name = f"set{seed}{'-control' if control else ''}"
    extra = ["--set", "train.shuffle_labels=true"] if control else []
    mer_ray(workdir, log, "compare", "--methods", METHODS, "--with-leaky", "--flow", "tvl1",
            "--synthetic-seed", str(seed), "--name", name, "--seeds", str(seeds), *extra)
    return json.loads((workdir / "runs" / f"{name}.json").read_text())


def alone(workdir: Path, log: Path, method: str) -> dict:
    name = f"alone-{method}"
    shutil.rmtree(workdir / "runs" / name, ignore_errors=True)
    wall = mer_ray(workdir, log, "train", "--set", f"model.method={method}", "--flow", "tvl1",
                   "--name", name)
    summary = json.loads((workdir / "runs" / name / "summary.json").read_text())
    return {"method": method, "wall_s": wall, "uf1": summary["metrics"]["uf1"],
            "fold_seconds": sum(f["worker_seconds"] for f in summary["folds"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mermethods"))
    ap.add_argument("--sets", type=int, nargs="+", default=[0, 60, 61, 62],
                    help="synthetic sets (their --synthetic-seed)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per method")
    ap.add_argument("--control-seeds", type=int, default=1,
                    help="training seeds of the shuffled-label controls")
    ap.add_argument("--keep", action="store_true",
                    help="keep the workdir: comparisons already run there resume")
    ap.add_argument("--out", type=Path, default=Path("methods.json"))
    ap.add_argument("--alone-only", action="store_true",
                    help="only the baselines' runs alone, in an earlier run's workdir (its demo "
                         "shards), into its --out file")
    args = ap.parse_args()
    if args.alone_only:
        results = json.loads(args.out.read_text())
        results["sets"] = {int(k): v for k, v in results["sets"].items()}
    else:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = {"sets": {}, "alone": []}
    log = args.workdir / "commands.log"
    results["alone"] = []
    for seed in [] if args.alone_only else args.sets:
        start = time.perf_counter()
        honest = compare(args.workdir, log, seed, False, args.seeds)
        control = compare(args.workdir, log, seed, True, args.control_seeds)
        results["sets"][seed] = {"rows": honest["rows"], "control": control["rows"],
                                 "comparison": {k: honest[k] for k in
                                                ("bootstrap", "multiple_comparisons", "notes")},
                                 "seconds": time.perf_counter() - start}
    for method in ("lbptop_svm", "ststnet"):
        results["alone"].append(alone(args.workdir, log, method))
    args.out.write_text(json.dumps(results, indent=1, default=str))
    show_results(results, args.sets)
    print(f"JSON: {args.out}; commands and their output: {log}")


def row(rows, method, leaky) -> dict:
    return next(r for r in rows if r["method"] == method and r["leaky"] == leaky)


def show_results(results: dict, sets: list[int]) -> None:
    """Per method and set: honest UF1 (mean over training seeds, +- sd, and each seed's),
    leaky UF1, the controls' largest honest figure, and compute seconds per fold."""
    table = []
    for method in METHODS.split(","):
        for s in sets:
            got = results["sets"][s]
            honest, leaky = row(got["rows"], method, False), row(got["rows"], method, True)
            ci = honest["uf1_ci95"]
            diff = honest.get("difference", {}).get("uf1")
            table.append((
                method, s, f"{honest['uf1']:.3f} +- {honest['uf1_std'] or 0:.3f}",
                " ".join(f"{v:.3f}" for v in honest["uf1_per_seed"]),
                f"[{ci[0]:.3f}, {ci[1]:.3f}]",
                "(best)" if honest["best"] else
                f"{diff['difference']:+.3f} p={diff['p_holm']:.3f}" if diff else "-",
                f"{leaky['uf1']:.3f}",
                f"{max(row(got['control'], method, False)['uf1_per_seed']):.3f}",
                f"{max(row(got['control'], method, True)['uf1_per_seed']):.3f}",
                f"{honest['seconds_per_fold']:.1f}"))
    show(["method", "set", "UF1 honest mean +- sd", "per seed", "95 % CI (subjects, seeds)",
          "diff from best, Holm p", "UF1 leaky", "control honest max", "control leaky max",
          "s/fold"], table,
         title="UF1 over all folds' predictions; set 0 is the demo's own, the others took no "
               "part in choosing any setting")
    for a in results["alone"]:
        print(f"{a['method']} alone on the demo set: {a['wall_s']:.0f} s for the command "
              f"(Ray start-up included), {a['fold_seconds']:.1f} s of fold compute, "
              f"UF1 {a['uf1']:.3f}")


if __name__ == "__main__":
    main()
