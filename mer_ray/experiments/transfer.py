"""Cross-dataset transfer (Table 5): train on every subject of one dataset, test on another.

One run per (source, target, adaptation) condition; each is a single fold job trained by the
same fold runner as LOSO:

- training and validation subjects come from the source only (validation: whole subjects drawn
  with the run's seed), and early stopping reads source validation UF1 only;
- the target is predicted once, with the best-validation weights;
- with domain adaptation, unlabelled target clips join every training step and enter the
  consistency term only (METHOD.md section 6). Their labels are replaced by -1 before they reach
  training, so the target's labels cannot steer anything; the adaptation is transductive (the
  clips adapted on are the clips tested), as in the paper's setting.

Records land under ``<storage>/<name>/{no_adaptation,adaptation}/`` in the LOSO layout
(``folds/<target>/fold.json``, ``predictions.parquet``, ``summary.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ExperimentConfig
from ..console import show
from ..data.folds import FoldSplit, draw_validation
from ..data.shards import (
    check_prepared,
    clips_root,
    label_counts,
    shard_subjects,
    subject_labels,
)
from ..storage import Storage, open_storage
from ..train.job import FoldJob, SplitSource
from ..train.loso import LosoSetup
from ..train.results import summarise as loso_summarise
from ..train.runner import Progress, pending, run_local, run_ray

CONDITIONS = {False: "no_adaptation", True: "adaptation"}


@dataclass
class TransferSetup:
    name: str
    storage: Storage
    source: str  # shard folders
    target: str
    source_meta: dict
    target_meta: dict
    class_names: list[str]
    exp: ExperimentConfig
    val: tuple[str, ...]
    train: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def target_name(self) -> str:
        return f"target:{self.target_meta.get('dataset', 'target')}"


def plan_transfer(source: str | Path, target: str | Path, exp: ExperimentConfig,
                  storage_path: str | Path, name: str | None = None) -> TransferSetup:
    source, target = str(Path(source).resolve()), str(Path(target).resolve())
    sm, tm = check_prepared(source, exp.data), check_prepared(target, exp.data)
    if sm["class_names"] != tm["class_names"]:
        raise ValueError(f"{source} and {target} have different classes ({sm['class_names']} vs "
                         f"{tm['class_names']}); transfer needs one label space (use the "
                         f"3-class protocol for both)")
    for key in ("frames", "size"):
        if sm["config"][key] != tm["config"][key]:
            raise ValueError(f"{source} and {target} were prepared with different {key} "
                             f"({sm['config'][key]} vs {tm['config'][key]})")
    labels = subject_labels(source)
    subjects = sorted(labels)
    val = draw_validation(subjects, labels, exp.train.val_subjects,
                          np.random.default_rng([exp.train.seed, 104729]))
    train = tuple(s for s in subjects if s not in val)
    test = tuple(shard_subjects(target))
    name = name or (f"{sm.get('dataset', 'source')}-to-{tm.get('dataset', 'target')}-"
                    f"{exp.hash()}")
    storage = open_storage(storage_path)
    record = {"name": name, "config_hash": exp.hash(), "config": exp.to_dict(),
              "source_shards": source, "target_shards": target,
              "source": sm.get("dataset"), "target": tm.get("dataset"),
              "class_names": sm["class_names"], "preprocess": sm.get("config"),
              "val_subjects": list(val), "train_subjects": list(train),
              "target_subjects": list(test)}
    if storage.exists(name, "experiment.json"):
        old = json.loads(storage.read_bytes(name, "experiment.json"))
        if (old["config_hash"], old["source_shards"], old["target_shards"]) != \
                (exp.hash(), source, target):
            raise ValueError(f"{storage.path(name)} holds another transfer run; use another "
                             f"--name or remove that folder")
    else:
        storage.write_atomic(json.dumps(record, indent=1).encode(), name, "experiment.json")
    return TransferSetup(name, storage, source, target, sm, tm, sm["class_names"], exp, val,
                         train, test)


def condition_dir(setup: TransferSetup, adapt: bool) -> str:
    return f"{setup.name}/{CONDITIONS[adapt]}"


def transfer_job(setup: TransferSetup, adapt: bool) -> FoldJob:
    """One condition as a fold job: train and validate on the source's subjects, predict every
    target clip once; with adaptation, the target clips join training unlabelled."""
    src, tgt = str(clips_root(setup.source)), str(clips_root(setup.target))
    sources = {"train": SplitSource(src, setup.train), "test": SplitSource(tgt, setup.test)}
    if setup.val:
        sources["val"] = SplitSource(src, setup.val)
    if adapt:
        sources["target"] = SplitSource(tgt, setup.test, unlabelled=True)
    where = condition_dir(setup, adapt)
    return FoldJob(
        key=CONDITIONS[adapt], experiment=setup.exp, class_names=tuple(setup.class_names),
        split=FoldSplit(setup.target_name, setup.val, setup.train), sources=sources,
        label_counts=tuple(label_counts(setup.source, setup.train, len(setup.class_names))),
        storage=setup.storage.uri, record_dir=f"{where}/folds/{setup.target_name}",
        checkpoint_dir=f"{where}/train", extra={
            "source": setup.source_meta.get("dataset"), "target": setup.target_meta.get("dataset"),
            "adaptation": adapt})


def run_transfer(setup: TransferSetup, conditions: list[bool], local: bool = False) -> list[bool]:
    """Train the conditions without stored results (on Ray Train workers, or in this process);
    returns those trained now."""
    jobs = pending([transfer_job(setup, a) for a in conditions])
    if not jobs:
        return []
    bar = Progress(len(jobs), 1, setup.name)
    bar.begin(len(conditions) - len(jobs))
    if local:
        run_local(jobs, progress=bar)
    else:
        run_ray(jobs, setup.exp.train, f"{setup.storage.uri.rstrip('/')}/{setup.name}/train/ray",
                bar, setup.storage.local_path(setup.name, "logs"))
    bar.end()
    trained = {j.key for j in jobs}
    return [a for a in conditions if CONDITIONS[a] in trained]


def summarise(setup: TransferSetup, adapt: bool, extra: dict | None = None) -> dict:
    """One condition's summary.json and predictions.parquet, in the LOSO summary's shape."""
    # the single "fold" whose test set is the whole target dataset
    one = FoldSplit(setup.target_name, setup.val, setup.train)
    view = LosoSetup(f"{setup.name}/{CONDITIONS[adapt]}", setup.storage, setup.target,
                     setup.class_names, [one], setup.exp,
                     {**setup.target_meta,
                      "synthetic": bool(setup.source_meta.get("synthetic"))
                      or bool(setup.target_meta.get("synthetic"))})
    return loso_summarise(view, {
        "transfer": {"source": setup.source_meta.get("dataset"),
                     "target": setup.target_meta.get("dataset"), "adaptation": adapt,
                     "adaptation_data": ("target clips without labels, in the consistency "
                                         "term only" if adapt else None),
                     "source_shards": setup.source, "target_shards": setup.target,
                     "val_subjects": list(setup.val), "train_subjects": list(setup.train),
                     "target_subjects": list(setup.test)},
        **(extra or {})})


def run_cross(exp: ExperimentConfig, source: str, source_shards: Path,
              targets: dict[str, Path], conditions: list[bool], storage_path: str,
              name: str | None = None, local: bool = False, extra: dict | None = None) -> list[dict]:
    """Table 5: for each target (name -> its shards), train on the source, test on the target,
    without and with domain adaptation; one table, and ``<name or cross>.json``."""
    rows, table = [], []
    for target, target_shards in targets.items():
        run = f"{name or 'cross'}-{source}-to-{target}-{exp.hash()}"
        setup = plan_transfer(source_shards, target_shards, exp, storage_path, run)
        run_transfer(setup, conditions, local=local)
        for adapt in conditions:
            s = summarise(setup, adapt, extra)
            m = s["metrics"]
            rows.append({"source": source, "target": target, "adaptation": adapt,
                         "run": f"{run}/{CONDITIONS[adapt]}", "uf1": m["uf1"], "uar": m["uar"],
                         "uf1_ci95": m["uf1_ci95"], "uar_ci95": m["uar_ci95"],
                         "n_target_clips": s["n_clips"], "pretrained": s["pretrained"],
                         "synthetic": s["synthetic"]})
            table.append((f"{source.upper()} -> {target.upper()}", "yes" if adapt else "no",
                          f"{100 * m['uf1']:.2f}", f"{100 * m['uar']:.2f}", s["n_clips"]))
    open_storage(storage_path).write_atomic(
        json.dumps({"grid": "cross_dataset", "title": "Cross-dataset transfer (Table 5)",
                    "rows": rows}, indent=1).encode(), f"{name or 'cross'}.json")
    flags = [f for f, on in (("SYNTHETIC data", rows and rows[0]["synthetic"]),
                             ("random-init backbone", rows and not rows[0]["pretrained"])) if on]
    show(["transfer", "adaptation", "UF1 %", "UAR %", "target clips"], table,
         title="Cross-dataset transfer, Table 5 layout (all target clips, one model)"
               + (f" [{'; '.join(flags)}]" if flags else ""))
    print("validation subjects for early stopping come from the source; adaptation uses target "
          "clips without labels")
    return rows
