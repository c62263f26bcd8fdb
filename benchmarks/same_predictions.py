"""Every kind of experiment in tiny mode, through the ``mer-ray`` command, and a digest of the
predictions each one made: run it on two versions of the code and compare the digests to show
that a change kept the predictions.

    python benchmarks/same_predictions.py --out before.json [--workdir /tmp/mersame]
    python benchmarks/same_predictions.py --out after.json --compare before.json

The experiments (a 4-subject synthetic SAMM-layout set, T=4, S=28, narrow heads, the trunk
cache on): a LOSO on the Ray fold slots; the same LOSO with ``--local``; a 2-row grid; a
transfer (SAMM -> CASME II, without and with adaptation); a nested search (2 outer folds, 2
trials, 1 inner fold); a flat search (2 trials on 2 folds, then the pick's LOSO); a comparison
of three methods (the paper's model, LBP-TOP + SVM, STSTNet) with the leaky protocol. Each is
named explicitly, and each digest entry is keyed by what it is (a grid row's label, a
transfer condition), never by a configuration hash, so configurations that gain fields still
compare. Predictions are compared clip by clip: the label, the predicted class, and the class
probabilities to 1e-6; whether every probability is bitwise the same is said too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent
TINY = {"data": {"frames": 4, "size": 28},
        "model": {"pretrained": False, "sfa_dim": 32, "dgat_dim": 32, "fusion_dim": 32},
        "train": {"max_epochs": 2, "patience": 2, "val_subjects": 1, "batch_size": 4,
                  "cache_trunk": True}}
SPACE = ("loss.lambda1: {type: loguniform, low: 0.01, high: 1.0}\n"
         "model.lora_rank: {type: choice, values: [2, 4]}\n")
GRID = ("title: tiny grid\nrows:\n  - {label: lr-1e-4, set: [train.lr=1.0e-4]}\n"
        "  - {label: lr-1e-3, set: [train.lr=1.0e-3]}\n")


def mer_ray(workdir: Path, log, *args: str) -> None:
    cmd = [sys.executable, "-m", "mer_ray", *args, "--config", str(workdir / "tiny.yaml"),
           "--workdir", str(workdir / "data"), "--storage-path", str(workdir / "runs")]
    print("$", " ".join(cmd[2:]), file=log, flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=log, stderr=subprocess.STDOUT)


SYNTH = ["--synthetic-subjects", "4", "--synthetic-clips", "1"]


def experiments(workdir: Path, log) -> dict[str, Path]:
    """Run each experiment; returns digest key -> the run folder holding predictions.parquet."""
    runs = workdir / "runs"
    out = {}
    mer_ray(workdir, log, "train", *SYNTH, "--name", "loso")
    out["loso (Ray slots)"] = runs / "loso"
    mer_ray(workdir, log, "train", *SYNTH, "--name", "loso-local", "--local")
    out["loso (--local)"] = runs / "loso-local"
    mer_ray(workdir, log, "grid", str(workdir / "grid.yaml"), "--dataset", "samm", *SYNTH,
            "--name", "grid")
    for row in json.loads((runs / "grid.json").read_text())["rows"]:
        out[f"grid row {row['row']}"] = runs / row["run"]
    mer_ray(workdir, log, "transfer", "--source", "samm", "--target", "casme2", *SYNTH,
            "--name", "transfer")
    for row in json.loads((runs / "transfer.json").read_text())["rows"]:
        out[f"transfer adaptation={row['adaptation']}"] = runs / row["run"]
    mer_ray(workdir, log, "sweep", *SYNTH, "--space", str(workdir / "space.yaml"),
            "--trials", "2", "--inner-folds", "1", "--max-folds", "2", "--name", "nested")
    out["nested search"] = runs / "nested"
    mer_ray(workdir, log, "sweep", "--flat", *SYNTH, "--space", str(workdir / "space.yaml"),
            "--num-samples", "2", "--sweep-folds", "2", "--name", "flat")
    out["flat search, the pick's LOSO"] = runs / "flat-best"
    mer_ray(workdir, log, "compare", "--methods", "mer,lbptop_svm,ststnet", "--with-leaky",
            *SYNTH, "--flow", "tvl1", "--name", "cmp")
    for row in json.loads((runs / "cmp.json").read_text())["rows"]:
        out[f"compare {row['method']}{' leaky' if row['leaky'] else ''}"] = runs / row["run"]
    return out


def digest(run: Path) -> list[dict]:
    preds = pl.read_parquet(run / "predictions.parquet").sort(["subject", "clip"])
    return [{"clip": f"{r['subject']}/{r['clip']}", "label": r["label"],
             "prediction": r["prediction"], "probabilities": r["probabilities"]}
            for r in preds.iter_rows(named=True)]


def differences(a: list[dict], b: list[dict], tol: float = 1e-6) -> list[str]:
    if [r["clip"] for r in a] != [r["clip"] for r in b]:
        return ["different clips"]
    out = []
    for x, y in zip(a, b):
        gap = max(abs(p - q) for p, q in zip(x["probabilities"], y["probabilities"]))
        if x["label"] != y["label"] or x["prediction"] != y["prediction"] or gap > tol:
            out.append(f"{x['clip']}: label {x['label']}/{y['label']}, predicted "
                       f"{x['prediction']}/{y['prediction']}, max |dp| {gap:.2e}")
    return out


def main() -> int:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="the digest JSON to write")
    ap.add_argument("--compare", type=Path, default=None, help="a digest to compare with")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mersame"))
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    (args.workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (args.workdir / "space.yaml").write_text(SPACE)
    (args.workdir / "grid.yaml").write_text(GRID)
    start = time.perf_counter()
    with open(args.workdir / "commands.log", "w") as log:
        runs = experiments(args.workdir, log)
    result = {"seconds": round(time.perf_counter() - start, 1),
              "runs": {key: digest(run) for key, run in runs.items()}}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{len(runs)} experiments in {result['seconds']} s; digest: {args.out}")
    if args.compare is None:
        return 0
    before = json.loads(args.compare.read_text())["runs"]
    bad = 0
    for key, rows in result["runs"].items():
        if key not in before:
            print(f"{key}: not in {args.compare}")
            bad += 1
            continue
        diff = differences(before[key], rows)
        bitwise = before[key] == rows
        print(f"{key}: {len(rows)} clips, " + (
            ("bitwise the same predictions" if bitwise else "the same predictions (to 1e-6)")
            if not diff else f"{len(diff)} differ: {diff[:3]}"))
        bad += bool(diff)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
