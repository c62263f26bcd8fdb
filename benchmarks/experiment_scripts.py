"""Wall time of each paper-experiment script in tiny mode, and the tables they produce.

    python benchmarks/experiment_scripts.py [--workdir /tmp/merscripts] [--local]

Runs ablation, sensitivity (lambda values 0.1 and 0.5), lora_vs_full, cross_dataset and sweep
(2 trials of 1 fold over the shipped search space, then the best configuration's LOSO) on small
synthetic sets, through a local Ray (or with ``--local``, folds in this process), each as its
own ``python`` call, the way a user runs them. Tiny mode: S=28, T=4, narrow heads, 2 epochs,
2 folds, 4 subjects with one clip per subject and class. Every call's wall time includes starting Python and Ray; the first call
of a dataset layout also renders and aligns its synthetic set. The scripts print their own
tables; at the end ``mer-ray report`` gathers them into ``WORKDIR/report/report.md`` and this
prints the times. The figures of a tiny run are noise: they show the scripts work end to end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from tiny import write_config  # noqa: E402

from mer_ray.console import show  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/merscripts"))
    p.add_argument("--local", action="store_true", help="folds in process instead of on Ray")
    args = p.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    config = write_config(args.workdir / "tiny.yaml",
                          ("train.cache_trunk=true", "train.max_epochs=2", "train.patience=2"))
    storage = args.workdir / "runs"
    common = ["--config", str(config), "--workdir", str(args.workdir / "data"),
              "--storage-path", str(storage), "--frames", "4", "--synthetic-subjects", "4",
              "--synthetic-clips-per-class", "1"] + (["--local"] if args.local else [])
    scripts = [
        ("ablation.py", ["--max-folds", "2"]),
        ("sensitivity.py", ["--max-folds", "2", "--values", "0.1", "0.5"]),
        ("lora_vs_full.py", ["--max-folds", "2"]),
        ("cross_dataset.py", []),
        ("sweep.py", ["--max-folds", "2", "--trials", "2", "--inner-folds", "1"]),
        ("sweep.py", ["--flat", "--max-folds", "2", "--num-samples", "2", "--sweep-folds", "1"]),
    ]
    rows = []
    for script, extra in scripts:
        start = time.perf_counter()
        subprocess.run([sys.executable, f"experiments/{script}", *common, *extra], cwd=REPO,
                       check=True)
        rows.append((script, f"{time.perf_counter() - start:.1f}"))
    subprocess.run([sys.executable, "-m", "mer_ray.cli", "report", str(storage), "--out",
                    str(args.workdir / "report")], cwd=REPO, check=True)
    show(["script", "wall s"], rows,
         title=f"experiment scripts in tiny mode ({'in process' if args.local else 'local Ray'})"
               f"; tables in {args.workdir / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
