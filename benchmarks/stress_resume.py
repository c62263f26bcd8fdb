"""Interrupt every resumable command at random moments, resume it, and check it ends complete
with the predictions of an uninterrupted run.

    python benchmarks/stress_resume.py [--rounds 4] [--seed 0] [--workdir /tmp/merstress]

The commands, on a small synthetic set prepared once (4 subjects, S = 28, T = 4, TV-L1 flow),
each with a tiny configuration: a LOSO on Ray, the same LOSO ``--local``, a flat search
(``sweep --flat``, its pick's LOSO included), a nested search, a comparison of two methods and
a grid of two rows. Each is first run once undisturbed (the reference). Then, ``--rounds``
times per command, in a fresh storage folder: start it, send Ctrl+C (SIGINT to its process
group, as a terminal does) after a random delay drawn from (0, its reference wall time), run
the same command again, and interrupt that too with probability 1/2, until a run ends by
itself. Each run's every ``predictions.parquet`` is compared with the reference's, value for
value.

Also measured per interruption: how long the command took to print its first line after the
signal, and to exit. Prints a table and writes ``stress.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mer_ray.console import show  # noqa: E402

TINY = {"data": {"frames": 4, "size": 28},
        "model": {"pretrained": False, "sfa_dim": 32, "dgat_dim": 32, "fusion_dim": 32},
        "train": {"max_epochs": 3, "patience": 3, "val_subjects": 1, "batch_size": 4,
                  "max_concurrent_folds": 2}}
SPACE = "loss.lambda1: {type: choice, values: [0.05, 0.1, 0.5]}\n"
GRID = ("title: stress grid\nrows:\n  - {label: lr 1e-4, set: [train.lr=1e-4]}\n"
        "  - {label: lr 1e-3, set: [train.lr=1e-3]}\n")


def commands(shards: Path, cfg: Path, space: Path, grid: Path) -> dict[str, list[str]]:
    common = ["--shards", str(shards), "--config", str(cfg)]
    return {
        "LOSO on Ray": ["train", *common, "--name", "loso"],
        "LOSO --local": ["train", *common, "--name", "loso", "--local"],
        "flat search": ["sweep", "--flat", *common, "--space", str(space), "--num-samples",
                        "3", "--sweep-folds", "1", "--name", "flat"],
        "nested search": ["sweep", *common, "--space", str(space), "--trials", "2",
                          "--inner-folds", "1", "--name", "nested"],
        "compare": ["compare", "--methods", "lbptop_svm,ststnet", *common, "--name", "cmp"],
        "grid": ["grid", str(grid), *common, "--name", "grid"],
    }


def mer_ray(args: list[str], storage: Path, log: Path, env: dict) -> subprocess.Popen:
    with open(log, "a") as fh:
        print("$ mer-ray", " ".join(args), file=fh, flush=True)
    with open(log, "a") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "mer_ray", *args, "--storage-path",
                                 str(storage)], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, text=True)


def predictions(storage: Path) -> dict[str, list]:
    """Every run's predictions under ``storage``: run -> [(clip, probabilities), ...]."""
    import polars as pl

    out = {}
    for f in sorted(storage.rglob("predictions.parquet")):
        p = pl.read_parquet(f)
        out[str(f.parent.relative_to(storage))] = list(zip(
            (p["subject"] + "/" + p["clip"]).to_list(), p["probabilities"].to_list()))
    return out


def interrupt(proc: subprocess.Popen, log: Path, delay: float) -> dict | None:
    """SIGINT after ``delay`` s (None when the run ended first); how soon a line followed and
    how soon the process exited."""
    deadline = time.time() + delay
    while time.time() < deadline:
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    size = log.stat().st_size
    os.killpg(proc.pid, signal.SIGINT)
    sent, first_line = time.time(), None
    while proc.poll() is None:
        if first_line is None and log.stat().st_size > size:
            first_line = time.time() - sent
        time.sleep(0.02)
    if first_line is None and log.stat().st_size > size:
        first_line = time.time() - sent
    return {"delay_s": round(delay, 2), "first_line_s": first_line,
            "exit_s": round(time.time() - sent, 2), "code": proc.returncode}


def watchdog(proc: subprocess.Popen, limit: float) -> threading.Timer:
    timer = threading.Timer(limit, lambda: proc.poll() is None and os.killpg(proc.pid,
                                                                            signal.SIGKILL))
    timer.daemon = True
    timer.start()
    return timer


def stress(name: str, args: list[str], ref: dict, wall: float, root: Path, rounds: int,
           rng: random.Random, env: dict) -> list[dict]:
    out = []
    for k in range(rounds):
        storage = root / f"{name.replace(' ', '_').replace('-', '')}-{k}"
        log = storage.with_suffix(".log")
        storage.mkdir(parents=True)
        stops, runs, code = [], 0, None
        while True:
            proc = mer_ray(args, storage, log, env)
            timer = watchdog(proc, 1800)
            runs += 1
            if runs == 1 or rng.random() < 0.5:
                got = interrupt(proc, log, rng.uniform(0.5, wall))
                if got is not None:
                    stops.append(got)
                    timer.cancel()
                    continue
            code = proc.wait()
            timer.cancel()
            break
        got = predictions(storage)
        same = got == ref
        worst = 0.0
        if not same and got.keys() == ref.keys():
            worst = max(abs(a - b) for r in ref for (_, p), (_, q) in zip(got[r], ref[r])
                        for a, b in zip(p, q))
        out.append({"command": name, "round": k, "interruptions": len(stops), "runs": runs,
                    "exit": code, "complete": code == 0 and got.keys() == ref.keys(),
                    "identical": same, "max_abs_difference": worst, "stops": stops})
        print(f"{name} round {k}: {len(stops)} interruption(s), exit {code}, "
              f"{'identical' if same else 'DIFFERENT'} predictions", flush=True)
    return out


def prepare(root: Path, env: dict) -> tuple[Path, Path, Path, Path]:
    import yaml

    data, shards = root / "syn", root / "shards"
    subprocess.run([sys.executable, "-m", "mer_ray", "synth", "--out", str(data), "--subjects",
                    "4", "--clips-per-class", "1", "--seed", "5"], cwd=REPO, env=env,
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "mer_ray", "prepare", "--dataset", "samm",
                    "--data-root", str(data), "--out", str(shards), "--frames", "4", "--size",
                    "28", "--flow", "tvl1"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    cfg, space, grid = root / "tiny.yaml", root / "space.yaml", root / "grid.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    space.write_text(SPACE)
    grid.write_text(GRID)
    return shards, cfg, space, grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/merstress"))
    ap.add_argument("--rounds", type=int, default=4, help="interrupted runs per command")
    ap.add_argument("--seed", type=int, default=0, help="draws the moments of the signals")
    ap.add_argument("--only", nargs="*", default=None, help="some commands only (names)")
    ap.add_argument("--out", type=Path, default=Path("stress.json"))
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    env = {**os.environ, "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", "/tmp/merray"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    rng = random.Random(args.seed)
    cmds = commands(*prepare(args.workdir, env))
    results = {"rounds": args.rounds, "seed": args.seed, "commands": {}, "runs": []}
    for name, cmd in cmds.items():
        if args.only and name not in args.only:
            continue
        ref_dir = args.workdir / f"reference-{name.replace(' ', '_').replace('-', '')}"
        ref_dir.mkdir()
        start = time.time()
        proc = mer_ray(cmd, ref_dir, ref_dir.with_suffix(".log"), env)
        if proc.wait() != 0:
            raise SystemExit(f"{name}: the reference run failed; see {ref_dir}.log")
        wall = time.time() - start
        ref = predictions(ref_dir)
        results["commands"][name] = {"reference_wall_s": round(wall, 1), "runs": len(ref)}
        print(f"{name}: reference {wall:.0f} s, {len(ref)} run(s) of predictions", flush=True)
        results["runs"] += stress(name, cmd, ref, wall, args.workdir, args.rounds, rng, env)
    args.out.write_text(json.dumps(results, indent=1))
    stops = [s for r in results["runs"] for s in r["stops"]]
    table = []
    for name in results["commands"]:
        rs = [r for r in results["runs"] if r["command"] == name]
        n = sum(r["interruptions"] for r in rs)
        table.append((name, len(rs), n, sum(r["complete"] for r in rs),
                      sum(r["identical"] for r in rs),
                      max((s["exit_s"] for r in rs for s in r["stops"]), default=0.0)))
    show(["command", "rounds", "interruptions", "complete", "identical predictions",
          "longest exit after Ctrl+C (s)"], table,
         title=f"{len(stops)} interruptions in all (signals drawn with seed {args.seed})")
    lines = [s["first_line_s"] for s in stops if s["first_line_s"] is not None]
    if lines:
        print(f"first line after Ctrl+C: median {statistics.median(lines):.2f} s, "
              f"longest {max(lines):.2f} s; exit codes: "
              f"{sorted({s['code'] for s in stops})}")
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
