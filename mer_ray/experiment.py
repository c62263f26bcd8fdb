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


def main(dataset: str, description: str, argv: list[str] | None = None) -> dict:
    from .cluster import ensure_ray
    from .data.synth import generate, is_synthetic
    from .train.config import load_experiment
    from .train.loso import plan_loso, run_folds
    from .train.results import print_summary, summarise

    args = build_parser(dataset, description).parse_args(argv)
    exp = load_experiment(args.config, args.overrides)
    root = args.data_root
    if root is None:
        root = args.workdir / f"synthetic_{dataset}_{args.protocol}"
        print(f"No --data-root: using a SYNTHETIC {dataset}-layout set in {root} "
              f"(rendered micro-expressions on one face photo, not {dataset.upper()} data).")
        if not (root / "synth.json").is_file():
            generate(root, LAYOUT[dataset], args.synthetic_subjects, args.synthetic_clips,
                     args.protocol, seed=args.synthetic_seed)
    synthetic = is_synthetic(root)
    ensure_ray()
    shards = ensure_shards(dataset, root, args.protocol, args.frames, exp.model.image_size,
                           args.workdir, synthetic)
    setup = plan_loso(shards, exp, args.storage_path, args.name, args.max_folds)
    trained = run_folds(setup)
    reused = len(setup.folds) - len(trained)
    if reused:
        print(f"{reused} fold(s) already had results and were not retrained")
    summary = summarise(setup, {"command": [Path(sys.argv[0]).name, *(argv or sys.argv[1:])],
                                "data_root": str(root)})
    print_summary(summary, setup.storage.path(setup.name))
    return summary
