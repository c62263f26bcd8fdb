"""`make demo` from nothing with an earlier version of the code and with this one, side by side
in one run (same machine, same load), and what changed in the predictions.

    python benchmarks/speedup.py --before REV [--rounds 2] [--workdir /tmp/merspeed]
                                 [--out speedup.json]

The earlier version is checked out (``git worktree``) into the work folder and run with this
virtual environment, its own ``mer_ray`` first on the path (each run's summary records the code
version it ran: the table prints it). Each round runs the two versions one after the other,
alternating which goes first, each in a fresh work folder: exactly `make demo`'s two commands
(``mer-ray train --config experiments/configs/demo.yaml``, then ``mer-ray report``), each
version with its own ``demo.yaml``. From every run's output: the whole wall time, and the
phases the command reports (aligning, the shared trunk tokens, the folds: from Ray Train's
start to the last fold's record). Then, once, this code with ``--set train.precision=fp32``
(``auto``, the earlier default, is fp32 on a CPU): what this code changes besides the
precision (``--no-fp32`` skips it). Prints the per-version median over the rounds, the ratios,
and each run's predictions against the earlier version's, clip by clip (predicted class, and
the largest difference of a class probability).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mer_ray.console import show  # noqa: E402

PHASES = {"align": r"aligning \d+ clips .*: done in (.+)$",
          "tokens": r"computing the frozen-trunk tokens .*: done in (.+)$",
          "folds": r"^\d+ fold\(s\) trained in (.+)$"}


def seconds(text: str) -> float:
    """'1 min 57 s' / '9 s' / '1 h 02 min' -> seconds."""
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(h|min|s)\b", text):
        total += float(value) * {"h": 3600, "min": 60, "s": 1}[unit]
    return total


def phases(log: str) -> dict[str, float]:
    out = {}
    for line in log.splitlines():
        for name, pattern in PHASES.items():
            m = re.search(pattern, line.strip())
            if m:
                out[name] = seconds(m.group(1))
    return out


def checkout(rev: str, where: Path) -> Path:
    """A detached work tree of ``rev`` at ``where`` (made again if it exists)."""
    subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=REPO,
                   capture_output=True)
    shutil.rmtree(where, ignore_errors=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(where), rev], cwd=REPO, check=True,
                   capture_output=True)
    return where


def demo(code: Path, workdir: Path, extra: tuple[str, ...] = ()) -> dict:
    """`make demo`'s two commands from nothing with the code in ``code`` (``extra``: more
    arguments for ``mer-ray train``)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(code), "RAY_TMPDIR": os.environ.get(
        "RAY_TMPDIR", "/tmp/merspeed-ray")}
    Path(env["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "mer_ray"]
    cmds = [py + ["train", "--config", "experiments/configs/demo.yaml", "--workdir",
                  str(workdir / "data"), "--storage-path", str(workdir / "results"), "--name",
                  "demo", *extra],
            py + ["report", str(workdir / "results"), "--out", str(workdir / "report")]]
    start = time.perf_counter()
    log = ""
    for cmd in cmds:
        done = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
        log += done.stdout + done.stderr
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed in {code}:\n{log[-3000:]}")
    wall = time.perf_counter() - start
    (workdir / "demo.log").write_text(log)
    summary = json.loads((workdir / "results/demo/summary.json").read_text())
    return {"wall_s": wall, **phases(log), "code_version": summary["code_version"],
            "uf1": summary["metrics"]["uf1"], "uar": summary["metrics"]["uar"],
            "fold_mean_uf1": summary["metrics"]["per_fold_mean_uf1"],
            "precision": summary["config"]["train"].get("precision"),
            "predictions": str(workdir / "results/demo/predictions.parquet")}


def compare_predictions(a: str, b: str) -> dict:
    """Two runs' predictions clip by clip: how many predict the same class, and the largest
    difference of any class probability."""
    import numpy as np
    import polars as pl

    joined = pl.read_parquet(a).join(pl.read_parquet(b), on=["fold", "clip"], suffix="_b")
    x = np.asarray(joined["probabilities"].to_list(), dtype=float)
    y = np.asarray(joined["probabilities_b"].to_list(), dtype=float)
    return {"clips": joined.height,
            "same_predicted_class": int((joined["prediction"] == joined["prediction_b"]).sum()),
            "max_probability_diff": float(np.abs(x - y).max()) if x.size else 0.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="the earlier commit (today's code)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/merspeed"))
    p.add_argument("--out", type=Path, default=Path("speedup.json"))
    p.add_argument("--no-fp32", action="store_true",
                   help="skip the run of this code with train.precision=fp32")
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    codes = {"before": checkout(args.before, args.workdir / "before-code"), "after": REPO}
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for name in order:
            res = demo(codes[name], args.workdir / f"{name}-{r}")
            runs[name].append(res)
            (args.workdir / f"{name}-{r}" / "result.json").write_text(json.dumps(res))
            print(f"round {r + 1} {name}: {res['wall_s']:.0f} s, folds {res.get('folds')} s, "
                  f"UF1 {res['uf1']:.4f} ({res['code_version']})", flush=True)
    if not args.no_fp32:  # this code in the earlier version's precision: what else changed
        res = demo(REPO, args.workdir / "after-fp32", ("--set", "train.precision=fp32"))
        runs["after, fp32"] = [res]
        print(f"after, fp32: {res['wall_s']:.0f} s, folds {res.get('folds')} s, UF1 "
              f"{res['uf1']:.4f}", flush=True)
    report(runs, args.out)


def _median(rs: list[dict], key: str) -> float | None:
    values = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _text(x: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def _ratio(b: float | None, a: float | None) -> str:
    return "-" if not a or b is None else f"{b / a:.2f}x"


def report(runs: dict[str, list[dict]], out: Path) -> None:
    keys = ("wall_s", "align", "tokens", "folds")
    med = {name: {k: _median(rs, k) for k in keys} for name, rs in runs.items()}
    rows = []
    for name, rs in runs.items():
        r0 = rs[0]
        rows.append((name, f"{r0['code_version']} ({r0['precision']})",  # auto: fp32 on a CPU
                     ", ".join(f"{r['wall_s']:.0f}" for r in rs),
                     *(_text(med[name][k]) for k in keys),
                     f"{r0['uf1']:.4f} / {r0['uar']:.4f} / {r0['fold_mean_uf1']:.4f}"))
    rows.append(("after vs before", "", "",
                 *(_ratio(med["before"][k], med["after"][k]) for k in keys), ""))
    if "after, fp32" in med:
        rows.append(("after, fp32 vs before", "", "",
                     *(_ratio(med["before"][k], med["after, fp32"][k]) for k in keys), ""))
    show(["code", "version (precision)", "make demo s (each round)", "median s", "align s",
          "tokens s", "folds s", "UF1 / UAR (all folds) / UF1 fold mean"], rows,
         title="make demo from nothing, both versions in one run (medians over rounds; align "
               "is printed only when it takes long enough to report)")
    same = {name: compare_predictions(runs["before"][0]["predictions"], rs[0]["predictions"])
            for name, rs in runs.items() if name != "before"}
    for name, c in same.items():
        print(f"predictions, before vs {name}: {c['same_predicted_class']} of {c['clips']} "
              f"clips predict the same class; largest class-probability difference "
              f"{c['max_probability_diff']:.3g}")
    within = {}
    for name, rs in runs.items():
        if len(rs) > 1:
            w = within[name] = compare_predictions(rs[0]["predictions"], rs[-1]["predictions"])
            print(f"predictions, {name}, round 1 vs round {len(rs)}: {w['same_predicted_class']} "
                  f"of {w['clips']} the same class, largest difference "
                  f"{w['max_probability_diff']:.3g}")
    out.write_text(json.dumps({"runs": runs, "medians": med, "before_vs_after": same,
                               "repeat": within}, indent=1))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
