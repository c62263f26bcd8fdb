"""What the experiment scripts share: arguments, the data steps, one LOSO run, its report.

Every ``experiments/loso_*.py`` is a thin call into ``main`` here. With no ``--data-root`` the
script writes a synthetic set in the dataset's layout and says loudly that it did.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LAYOUT = {"samm": "samm", "casme2": "casme2", "smic": "smic"}


def build_parser(dataset: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-root", type=Path, default=None,
                   help=f"the {dataset} folder; omitted: a synthetic {dataset}-layout set")
    p.add_argument("--protocol", default="3class", choices=("3class", "5class"))
    p.add_argument("--config", type=Path, default=None, help="experiment YAML (model/loss/train)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="override, e.g. model.lora_rank=16")
    p.add_argument("--storage-path", default="results",
                   help="where runs are stored: a folder or a pyarrow URI (s3://...)")
    p.add_argument("--name", default=None, help="run name (default: dataset-protocol-confighash)")
    p.add_argument("--max-folds", type=int, default=None, help="only the first N folds (smoke)")
    p.add_argument("--workdir", type=Path, default=Path("data"),
                   help="where synthetic data and aligned shards are written")
    p.add_argument("--frames", type=int, default=8, help="T, frames sampled per clip")
    p.add_argument("--synthetic-subjects", type=int, default=8)
    p.add_argument("--synthetic-clips", type=int, default=2, help="per subject and class")
    p.add_argument("--synthetic-seed", type=int, default=0)
    p.add_argument("--local", action="store_true",
                   help="train the folds one after another in this process instead of on Ray "
                        "Train workers (smoke runs; the results are the same)")
    return p


def ensure_shards(dataset: str, root: Path, protocol: str, frames: int, size: int,
                  workdir: Path, synthetic: bool) -> Path:
    """Aligned shards for (root, protocol, T, S), prepared once and reused."""
    from .data.align import AlignGeometry
    from .data.labels import class_names
    from .data.manifest import build_manifest
    from .data.prepare import PrepareConfig, prepare_shards

    shards = workdir / f"shards-{dataset}-{protocol}-T{frames}-S{size}"
    meta_file = shards / "prepare.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("root") == str(root.resolve()) and meta.get("dataset") == dataset:
            print(f"reusing aligned shards in {shards}")
            return shards
    manifest = build_manifest(dataset, root, protocol)
    res = prepare_shards(manifest, shards, PrepareConfig(frames=frames, size=size,
                                                         geometry=AlignGeometry()),
                         class_names=class_names(dataset, protocol), overwrite=True,
                         extra_meta={"dataset": dataset, "protocol": protocol,
                                     "root": str(root.resolve()), "synthetic": synthetic})
    print(f"aligned {res.clips} clips into {shards} ({res.rejected.height} rejected, see "
          f"rejected.parquet)")
    return shards


def prepare_data(dataset: str, args: argparse.Namespace):
    """The config and the aligned shards the arguments ask for: (experiment config, data root,
    shard folder). Starts (or joins) Ray."""
    from .cluster import ensure_ray
    from .data.synth import generate, is_synthetic
    from .train.config import load_experiment

    exp = load_experiment(args.config, args.overrides)
    root = args.data_root
    if root is None:
        root = args.workdir / f"synthetic_{dataset}_{args.protocol}"
        print(f"No --data-root: using a SYNTHETIC {dataset}-layout set in {root} "
              f"(rendered micro-expressions on one face photo, not {dataset.upper()} data).")
        if not (root / "synth.json").is_file():
            generate(root, LAYOUT[dataset], args.synthetic_subjects, args.synthetic_clips,
                     args.protocol, seed=args.synthetic_seed)
    ensure_ray()
    shards = ensure_shards(dataset, root, args.protocol, args.frames, exp.model.image_size,
                           args.workdir, is_synthetic(root))
    return exp, root, shards


def run_loso(exp, shards: Path, args: argparse.Namespace, name: str | None,
             extra: dict | None = None) -> dict:
    """One LOSO run with its summary written and printed."""
    from .train.local import run_folds_local
    from .train.loso import plan_loso, run_folds
    from .train.results import print_summary, summarise

    setup = plan_loso(shards, exp, args.storage_path, name, args.max_folds)
    trained = run_folds_local(setup) if args.local else run_folds(setup)
    reused = len(setup.folds) - len(trained)
    if reused:
        print(f"{reused} fold(s) already had results and were not retrained")
    summary = summarise(setup, extra)
    print_summary(summary, setup.storage.path(setup.name))
    return summary


def main(dataset: str, description: str, argv: list[str] | None = None) -> dict:
    args = build_parser(dataset, description).parse_args(argv)
    exp, root, shards = prepare_data(dataset, args)
    return run_loso(exp, shards, args, args.name,
                    {"command": [Path(sys.argv[0]).name, *(argv or sys.argv[1:])],
                     "data_root": str(root)})


def grid_main(dataset: str, description: str, rows: list[tuple[str, list[str]]], prefix: str,
              title: str, argv: list[str] | None = None,
              parser: argparse.ArgumentParser | None = None) -> list[dict]:
    """One LOSO per row (a label and its config overrides on top of --config/--set), then one
    table: UF1/UAR over all folds' predictions and as the mean over folds."""
    from .console import show
    from .storage import open_storage

    p = parser or build_parser(dataset, description)
    args = p.parse_args(argv)
    base, root, shards = prepare_data(dataset, args)
    out, table = [], []
    for label, overrides in rows:
        exp = base.with_overrides(overrides)
        # Named by the configuration: a row that repeats another (lambda1 = 0.1 with lambda2 =
        # 0.5 sits on both sensitivity curves) reuses its folds instead of training them again.
        name = f"{args.name or prefix}-{exp.hash()}"
        summary = run_loso(exp, shards, args, name,
                           {"command": [Path(sys.argv[0]).name, *(argv or sys.argv[1:])],
                            "data_root": str(root), "grid": prefix, "row": label,
                            "row_overrides": overrides})
        m = summary["metrics"]
        out.append({"row": label, "run": name, "overrides": overrides,
                    **{k: m[k] for k in ("uf1", "uar", "per_fold_mean_uf1",
                                         "per_fold_mean_uar")},
                    "pretrained": summary["pretrained"], "synthetic": summary["synthetic"]})
        table.append((label, f"{100 * m['uf1']:.2f}", f"{100 * m['uar']:.2f}",
                      f"{100 * m['per_fold_mean_uf1']:.2f}", f"{100 * m['per_fold_mean_uar']:.2f}",
                      summary["n_folds"]))
    open_storage(args.storage_path).write_atomic(
        json.dumps({"grid": prefix, "title": title, "rows": out}, indent=1).encode(),
        f"{args.name or prefix}.json")
    synthetic = " (SYNTHETIC data)" if out and out[0]["synthetic"] else ""
    weights = "" if out and out[0]["pretrained"] else ", random-init backbone"
    show(["row", "UF1 % (all folds)", "UAR % (all folds)", "UF1 % (fold mean)",
          "UAR % (fold mean)", "folds"], table, title=f"{title}{synthetic}{weights}")
    return out
