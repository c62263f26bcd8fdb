"""What the experiment scripts share: arguments, the data steps, one LOSO run, its report.

Every ``experiments/loso_*.py`` is a thin call into ``main`` here. With no ``--data-root`` the
script writes a synthetic set in the dataset's layout and says loudly that it did.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LAYOUT = {"samm": "samm", "casme2": "casme2", "smic": "smic", "casme3": "casme3"}
# The synthetic default: 8 subjects x 4 clips per class (96 clips in 3-class; SAMM's 3-class set
# has 133 in 28 subjects). The MEGC composite: 3 subjects per part (9 subjects, 108 clips).
SYNTH_SIZE = (8, 4)
SYNTH_SUBJECTS = {"megc": 3}


def build_parser(dataset: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-root", type=Path, default=None,
                   help=f"the {dataset} folder; omitted: a synthetic {dataset}-layout set")
    from .data.adapters import DATASETS
    from .data.labels import ALL_PROTOCOLS, protocols_of

    offered = protocols_of(dataset) if dataset in DATASETS else ALL_PROTOCOLS
    p.add_argument("--protocol", default="3class", choices=offered)
    p.add_argument("--annotations", type=Path, default=None,
                   help="the annotation file, when it is not in --data-root or several versions "
                        "are (MEGC: combined_3class_gt.csv)")
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
    p.add_argument("--synthetic-subjects", type=int,
                   default=SYNTH_SUBJECTS.get(dataset, SYNTH_SIZE[0]),
                   help="subjects of the synthetic set (the MEGC composite: per part)")
    p.add_argument("--synthetic-clips", type=int, default=SYNTH_SIZE[1],
                   help="per subject and class")
    p.add_argument("--synthetic-seed", type=int, default=0)
    p.add_argument("--synthetic-intensity", type=float, default=1.0,
                   help="scales every action-unit amplitude of the synthetic set")
    p.add_argument("--synthetic-no-distractors", action="store_true",
                   help="synthetic set without blinks, head drift and flicker")
    p.add_argument("--seeds", type=int, default=1,
                   help="repeat the run with this many training seeds (train.seed, +1, ...) and "
                        "report the mean and standard deviation over them")
    p.add_argument("--local", action="store_true",
                   help="train the folds one after another in this process instead of on Ray "
                        "Train workers (smoke runs; the results are the same)")
    return p


def ensure_shards(dataset: str, root: Path, protocol: str, frames: int, size: int,
                  workdir: Path, synthetic: bool, annotations: Path | None = None) -> Path:
    """Aligned shards for (root, protocol, T, S), prepared once and reused. The folder name
    carries the data root's name, so two data sets never share (and overwrite) one folder;
    shards made from another annotation file are made again."""
    from .data.align import AlignGeometry
    from .data.labels import class_names
    from .data.manifest import build_manifest
    from .data.prepare import PrepareConfig, prepare_shards

    shards = workdir / f"shards-{dataset}-{protocol}-T{frames}-S{size}-{root.resolve().name}"
    meta_file = shards / "prepare.json"
    given = str(Path(annotations).resolve()) if annotations else None
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("root") == str(root.resolve()) and meta.get("dataset") == dataset \
                and meta.get("annotations") == given:
            print(f"reusing aligned shards in {shards}")
            return shards
    manifest = build_manifest(dataset, root, protocol, annotations=annotations)
    res = prepare_shards(manifest, shards, PrepareConfig(frames=frames, size=size,
                                                         geometry=AlignGeometry()),
                         class_names=class_names(dataset, protocol), overwrite=True,
                         extra_meta={"dataset": dataset, "protocol": protocol,
                                     "root": str(root.resolve()), "synthetic": synthetic,
                                     "annotations": given})
    print(f"aligned {res.clips} clips into {shards} ({res.rejected.height} rejected, see "
          f"rejected.parquet)")
    return shards


def driver_log(args: argparse.Namespace) -> Path:
    """Where this command's Ray messages go: ``<storage>/logs/`` (``<workdir>/logs/`` when the
    storage is remote)."""
    import time

    from .storage import open_storage

    local = open_storage(args.storage_path).local_path("logs")
    base = Path(local) if local else args.workdir / "logs"
    return base / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(sys.argv[0]).stem or 'mer-ray'}.log"


def prepare_data(dataset: str, args: argparse.Namespace):
    """The config and the aligned shards the arguments ask for: (experiment config, data root,
    shard folder). Starts (or joins) Ray."""
    from .cluster import ensure_ray
    from .train.config import load_experiment

    exp = load_experiment(args.config, args.overrides)
    ensure_ray(log_file=driver_log(args))
    root, shards = dataset_shards(dataset, args.data_root, args, exp.model.image_size,
                                  args.protocol, annotations=args.annotations)
    return exp, root, shards


def run_loso(exp, shards: Path, args: argparse.Namespace, name: str | None,
             extra: dict | None = None) -> dict:
    """One LOSO run with its summary written and printed."""
    from .train.loso import plan_loso, run_folds
    from .train.results import print_summary, summarise

    setup = plan_loso(shards, exp, args.storage_path, name, args.max_folds)
    trained = run_folds(setup, local=args.local)
    reused = len(setup.folds) - len(trained)
    if reused:
        print(f"{reused} fold(s) already had results and were not retrained")
    summary = summarise(setup, extra)
    print_summary(summary, setup.storage.path(setup.name))
    return summary


def run_seeded(exp, shards: Path, args: argparse.Namespace, name: str,
               extra: dict | None = None) -> dict:
    """A LOSO run, or with ``--seeds N`` the same run with N training seeds: the figures (the
    mean and standard deviation over seeds then), their 95 % bootstrap interval over test
    subjects (of the mean over seeds), and the runs' names and summaries."""
    import statistics

    from .metrics import bootstrap_interval
    from .train.results import subject_predictions

    n = max(1, args.seeds)
    if n == 1:
        s = run_loso(exp, shards, args, name, extra)
        m = s["metrics"]
        return {"runs": [name], "summaries": [s], "seeds": [exp.train.seed],
                **{k: m[k] for k in ("uf1", "uar", "per_fold_mean_uf1", "per_fold_mean_uar",
                                     "uf1_ci95", "uar_ci95")}}
    seeds = [exp.train.seed + i for i in range(n)]
    names = [f"{name}-seed{sd}" for sd in seeds]
    summaries = [run_loso(exp.with_values({"train.seed": sd}), shards, args, nm,
                          {**(extra or {}), "seeds_of": name})
                 for sd, nm in zip(seeds, names)]

    def over_seeds(key):
        vals = [s["metrics"][key] for s in summaries]
        return statistics.mean(vals), statistics.stdev(vals)

    from .storage import open_storage

    storage = open_storage(args.storage_path)
    ci = bootstrap_interval([subject_predictions(storage, nm) for nm in names],
                            range(len(summaries[0]["class_names"])), seed=exp.train.seed)
    (uf1, uf1_sd), (uar, uar_sd) = over_seeds("uf1"), over_seeds("uar")
    return {"runs": names, "summaries": summaries, "seeds": seeds,
            "uf1": uf1, "uf1_std": uf1_sd, "uar": uar, "uar_std": uar_sd,
            "per_fold_mean_uf1": over_seeds("per_fold_mean_uf1")[0],
            "per_fold_mean_uar": over_seeds("per_fold_mean_uar")[0],
            "uf1_ci95": ci["uf1"], "uar_ci95": ci["uar"]}


def _pm(row: dict, key: str) -> str:
    """A figure in %, with +- std over seeds when there are several."""
    text = f"{100 * row[key]:.2f}"
    if f"{key}_std" in row:
        text += f" +- {100 * row[f'{key}_std']:.2f}"
    ci = row.get(f"{key}_ci95")
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def main(dataset: str, description: str, argv: list[str] | None = None) -> dict:
    args = build_parser(dataset, description).parse_args(argv)
    exp, root, shards = prepare_data(dataset, args)
    extra = {"command": [Path(sys.argv[0]).name, *(argv or sys.argv[1:])],
             "data_root": str(root)}
    if args.seeds <= 1:
        return run_loso(exp, shards, args, args.name, extra)
    from .console import show
    from .storage import open_storage

    name = args.name or f"{dataset}-{args.protocol}-{exp.hash()}"
    res = run_seeded(exp, shards, args, name, extra)
    rows = [{"row": f"seed {sd}", "run": run, **{k: s["metrics"][k] for k in (
                "uf1", "uar", "per_fold_mean_uf1", "per_fold_mean_uar", "uf1_ci95",
                "uar_ci95")},
             "pretrained": s["pretrained"], "synthetic": s["synthetic"]}
            for sd, run, s in zip(res["seeds"], res["runs"], res["summaries"])]
    combined = {k: res[k] for k in ("uf1", "uf1_std", "uar", "uar_std", "uf1_ci95",
                                    "uar_ci95", "seeds", "runs")}
    open_storage(args.storage_path).write_atomic(json.dumps(
        {"grid": "seeds", "title": f"{name}: {len(res['seeds'])} training seeds",
         "rows": rows, "combined": combined}, indent=1).encode(), f"{name}-seeds.json")
    show(["run", "UF1 % (all folds) [95 % CI]", "UAR % (all folds) [95 % CI]"],
         [(r["row"], _pm(r, "uf1"), _pm(r, "uar")) for r in rows]
         + [("mean +- std over seeds", _pm(combined, "uf1"), _pm(combined, "uar"))],
         title=f"{name}: the same LOSO with {len(res['seeds'])} training seeds (interval of "
               f"the mean: bootstrap over test subjects)")
    return combined


def grid_main(dataset: str, description: str, rows: list[tuple[str, list[str]]], prefix: str,
              title: str, argv: list[str] | None = None,
              parser: argparse.ArgumentParser | None = None,
              row_extras: list[dict] | None = None) -> list[dict]:
    """One LOSO per row (a label and its config overrides on top of --config/--set), then one
    table: UF1/UAR over all folds' predictions and as the mean over folds. ``row_extras``: one
    dict per row, stored with that row in the grid file (e.g. Table 7's accounting)."""
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
        res = run_seeded(exp, shards, args, name,
                         {"command": [Path(sys.argv[0]).name, *(argv or sys.argv[1:])],
                          "data_root": str(root), "grid": prefix, "row": label,
                          "row_overrides": overrides})
        summary = res["summaries"][0]
        out.append({"row": label, "run": name if len(res["runs"]) == 1 else res["runs"],
                    "overrides": overrides,
                    **{k: v for k, v in res.items() if k not in ("runs", "summaries")},
                    "pretrained": summary["pretrained"], "synthetic": summary["synthetic"],
                    **(row_extras[len(out)] if row_extras else {})})
        table.append((label, _pm(out[-1], "uf1"), _pm(out[-1], "uar"),
                      f"{100 * res['per_fold_mean_uf1']:.2f}",
                      f"{100 * res['per_fold_mean_uar']:.2f}", summary["n_folds"]))
    open_storage(args.storage_path).write_atomic(
        json.dumps({"grid": prefix, "title": title, "rows": out}, indent=1).encode(),
        f"{args.name or prefix}.json")
    synthetic = " (SYNTHETIC data)" if out and out[0]["synthetic"] else ""
    weights = "" if out and out[0]["pretrained"] else ", random-init backbone"
    seeds = f", mean +- std over {args.seeds} seeds" if args.seeds > 1 else ""
    show(["row", "UF1 % (all folds) [95 % CI]", "UAR % (all folds) [95 % CI]",
          "UF1 % (fold mean)", "UAR % (fold mean)", "folds"], table,
         title=f"{title}{synthetic}{weights}{seeds}")
    return out


SYNTH_SEEDS = {"samm": 0, "casme2": 1, "smic": 2, "casme3": 3}  # seeded apart: stand-in datasets


def dataset_shards(dataset: str, root: Path | None, args: argparse.Namespace, size: int,
                   protocol: str = "3class", seed: int | None = None,
                   annotations: Path | None = None) -> tuple[Path, Path]:
    """(data root, aligned shards) of one dataset; a synthetic set in its layout when ``root``
    is None (said loudly). Ray must be running."""
    from .data.synth import generate, generate_composite, is_synthetic
    from .data.synth.render import RenderConfig

    if root is None:
        seed = args.synthetic_seed if seed is None else seed
        # every setting that changes the set is in the folder name: no stale set is reused
        parts = [f"synthetic_{dataset}_{protocol}"]
        if seed != 0:
            parts.append(f"seed{seed}")
        if (args.synthetic_subjects, args.synthetic_clips) != \
                (SYNTH_SUBJECTS.get(dataset, SYNTH_SIZE[0]), SYNTH_SIZE[1]):
            parts.append(f"{args.synthetic_subjects}x{args.synthetic_clips}")
        if args.synthetic_intensity != 1.0:
            parts.append(f"i{args.synthetic_intensity:g}")
        if args.synthetic_no_distractors:
            parts.append("nodistract")
        root = args.workdir / "_".join(parts)
        print(f"No data root for {dataset}: using a SYNTHETIC {dataset}-layout set in {root} "
              f"(seed {seed}, AU intensity x{args.synthetic_intensity:g}, "
              f"{'no ' if args.synthetic_no_distractors else ''}distractors; rendered "
              f"micro-expressions on one face photo, not {dataset.upper()} data).")
        render = RenderConfig(intensity=args.synthetic_intensity,
                              distractors=not args.synthetic_no_distractors)
        if (root / "synth.json").is_file():
            pass
        elif dataset == "megc":
            generate_composite(root, args.synthetic_subjects, args.synthetic_clips, seed=seed,
                               render=render)
        else:
            generate(root, LAYOUT[dataset], args.synthetic_subjects, args.synthetic_clips,
                     protocol, seed=seed, render=render)
    return root, ensure_shards(dataset, root, protocol, args.frames, size, args.workdir,
                               is_synthetic(root), annotations)


def cross_main(description: str, argv: list[str] | None = None) -> list[dict]:
    """Table 5: for each target, train on the source, test on the target, without and with
    domain adaptation; one table."""
    from .cluster import ensure_ray
    from .console import show
    from .storage import open_storage
    from .train.config import load_experiment
    from .transfer import CONDITIONS, plan_transfer, run_transfer, summarise

    p = build_parser("source", description)
    p.add_argument("--source", default="samm", choices=sorted(LAYOUT))
    p.add_argument("--target", dest="targets", action="append", default=None,
                   choices=sorted(LAYOUT), help="repeatable; default: casme2 and smic")
    p.add_argument("--root", dest="roots", action="append", default=[], metavar="DATASET=PATH",
                   help="a dataset's folder, e.g. casme2=/data/CASME2 (repeatable); a dataset "
                        "without one is a synthetic set seeded differently per dataset")
    p.add_argument("--conditions", default="both", choices=("both", "none", "adapt"),
                   help="without adaptation, with it, or both")
    args = p.parse_args(argv)
    if args.protocol != "3class":
        p.error("cross-dataset transfer uses the 3-class protocol (one label space)")
    roots = {}
    for item in args.roots:
        key, _, path = item.partition("=")
        if key not in LAYOUT or not path:
            p.error(f"--root {item!r}: expected DATASET=PATH with DATASET in {sorted(LAYOUT)}")
        roots[key] = Path(path)
    if args.data_root is not None:
        roots.setdefault(args.source, args.data_root)
    targets = args.targets or ["casme2", "smic"]
    if args.source in targets:
        p.error("a target must differ from the source")
    conditions = {"both": [False, True], "none": [False], "adapt": [True]}[args.conditions]
    exp = load_experiment(args.config, args.overrides)
    ensure_ray(log_file=driver_log(args))
    src_root, src = dataset_shards(args.source, roots.get(args.source), args,
                                   exp.model.image_size, seed=SYNTH_SEEDS[args.source],
                                   annotations=args.annotations)
    rows, table = [], []
    command = [Path(sys.argv[0]).name, *(argv or sys.argv[1:])]
    for target in targets:
        tgt_root, tgt = dataset_shards(target, roots.get(target), args, exp.model.image_size,
                                       seed=SYNTH_SEEDS[target])
        name = f"{args.name or 'cross'}-{args.source}-to-{target}-{exp.hash()}"
        setup = plan_transfer(src, tgt, exp, args.storage_path, name)
        run_transfer(setup, conditions, local=args.local)
        for adapt in conditions:
            s = summarise(setup, adapt, {"command": command, "source_root": str(src_root),
                                         "target_root": str(tgt_root)})
            m = s["metrics"]
            rows.append({"source": args.source, "target": target, "adaptation": adapt,
                         "run": f"{name}/{CONDITIONS[adapt]}", "uf1": m["uf1"], "uar": m["uar"],
                         "n_target_clips": s["n_clips"], "pretrained": s["pretrained"],
                         "synthetic": s["synthetic"]})
            table.append((f"{args.source.upper()} -> {target.upper()}",
                          "yes" if adapt else "no", f"{100 * m['uf1']:.2f}",
                          f"{100 * m['uar']:.2f}", s["n_clips"]))
    open_storage(args.storage_path).write_atomic(
        json.dumps({"grid": "cross_dataset", "title": "Cross-dataset transfer (Table 5)",
                    "rows": rows}, indent=1).encode(),
        f"{args.name or 'cross'}.json")
    flags = [f for f, on in (("SYNTHETIC data", rows and rows[0]["synthetic"]),
                             ("random-init backbone", rows and not rows[0]["pretrained"])) if on]
    show(["transfer", "adaptation", "UF1 %", "UAR %", "target clips"], table,
         title="Cross-dataset transfer, Table 5 layout (all target clips, one model)"
               + (f" [{'; '.join(flags)}]" if flags else ""))
    print("validation subjects for early stopping come from the source; adaptation uses target "
          "clips without labels")
    return rows
