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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import ExperimentConfig
from ..console import show
from ..data.choice import SyntheticSet, dataset_choices
from ..data.folds import draw_validation
from ..data.shards import Shards
from ..fitting.job import FoldJob
from ..integrity import marked, notes, row_flags
from ..methods import Method, method_of
from ..model.encoder import BackboneSource
from ..storage import open_storage
from ..train.folder import RunFolder
from ..train.jobs import FoldPlan, transfer_job
from ..train.runner import pending, run_jobs
from .loso import backbone_for
from .names import data_tag, transfer_name
from .summary import RunView, summarise_run

CONDITIONS = {False: "no_adaptation", True: "adaptation"}


@dataclass
class TransferRun:
    folder: RunFolder
    source: Shards
    target: Shards
    exp: ExperimentConfig
    backbone: BackboneSource
    val: tuple[str, ...]
    train: tuple[str, ...]
    method: Method

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def target_name(self) -> str:
        return f"target:{self.target.meta.dataset or 'target'}"


def plan_transfer(source: Shards, target: Shards, exp: ExperimentConfig,
                  storage_path: str, name: str) -> TransferRun:
    source.check(exp.data)
    target.check(exp.data)
    if source.class_names != target.class_names:
        raise ValueError(f"{source.root} and {target.root} have different classes "
                         f"({list(source.class_names)} vs {list(target.class_names)}); "
                         f"transfer needs one label space (use the 3-class protocol for both)")
    labels = source.subject_labels()
    subjects = sorted(labels)
    val = draw_validation(subjects, labels, exp.train.val_subjects,
                          np.random.default_rng([exp.train.seed, 104729]))
    train = tuple(s for s in subjects if s not in val)
    sm, tm = source.meta, target.meta
    folder = RunFolder.open(storage_path, name)
    folder.claim({"config_hash": exp.hash(), "config": exp.to_dict(),
                  "source_shards": str(source.root), "target_shards": str(target.root),
                  "source": sm.dataset, "target": tm.dataset,
                  "class_names": list(sm.class_names), "preprocess": sm.config,
                  "val_subjects": list(val), "train_subjects": list(train),
                  "target_subjects": target.subjects()},
                 {"config_hash": exp.hash(), "source_shards": str(source.root),
                  "target_shards": str(target.root), "source_id": sm.shards_id,
                  "target_id": tm.shards_id})
    method = method_of(exp)
    return TransferRun(folder, source, target, exp, backbone_for(exp, method), val, train,
                       method)


def condition_jobs(run: TransferRun, conditions: list[bool]) -> list[FoldJob]:
    plan = FoldPlan(run.exp, run.source, run.backbone, folder=run.folder, method=run.method)
    return [transfer_job(plan, run.target, run.train, run.val, adapt, CONDITIONS[adapt],
                         {"source": run.source.meta.dataset, "target": run.target.meta.dataset,
                          "adaptation": adapt})
            for adapt in conditions]


def run_transfer(run: TransferRun, conditions: list[bool], local: bool = False) -> list[bool]:
    """Train the conditions without stored results (on Ray Train workers, or in this
    process); returns those trained now."""
    jobs = condition_jobs(run, conditions)
    todo = {j.key for j in pending(jobs)}
    run_jobs(jobs, run.exp.train, local=local, folder=run.folder, title=run.name)
    return [a for a in conditions if CONDITIONS[a] in todo]


def transfer_summary(run: TransferRun, adapt: bool, extra: dict | None = None) -> dict:
    """One condition's summary.json and predictions.parquet, in the LOSO summary's shape: a
    single "fold" whose test set is every target clip."""
    folder = RunFolder(run.folder.storage, run.folder.rel(CONDITIONS[adapt]))
    view = RunView(folder, run.exp, run.source.class_names, (run.target_name,),
                   str(run.target.root), run.target.meta,
                   synthetic=run.source.meta.synthetic or run.target.meta.synthetic)
    return summarise_run(view, {
        "transfer": {"source": run.source.meta.dataset, "target": run.target.meta.dataset,
                     "adaptation": adapt,
                     "adaptation_data": ("target clips without labels, in the consistency "
                                         "term only" if adapt else None),
                     "source_shards": str(run.source.root),
                     "target_shards": str(run.target.root), "val_subjects": list(run.val),
                     "train_subjects": list(run.train),
                     "target_subjects": run.target.subjects()},
        **(extra or {})})


def transfer_command(source: str, targets: list[str] | None, roots: list[str],
                     annotations: Path | None, conditions: str, workdir: Path,
                     synthetic: SyntheticSet, exp: ExperimentConfig, user_set: set[str],
                     opts, name: str | None, start_ray) -> int:
    """``mer-ray transfer``: every dataset checked and the run names refused when taken, before
    ``start_ray``; then each target's transfer and the table."""
    targets = targets or ["casme2", "smic"]
    if source in targets:
        raise ValueError("a target must differ from the source")
    adapt = {"both": [False, True], "none": [False], "adapt": [True]}[conditions]
    choices = dataset_choices([source, *targets], roots, "3class", synthetic, workdir)
    src = replace(choices.pop(source), annotations=annotations)
    tgts = choices
    for d in (src, *tgts.values()):
        d.check()
    prefix = name or "cross"
    for d in tgts.values():
        RunFolder.open(opts.storage_path, transfer_name(prefix, data_tag(src), data_tag(d),
                                                        exp)).check_claim(
            {"config_hash": exp.hash(), "source_shards": str(src.shards_path(exp.data)),
             "target_shards": str(d.shards_path(exp.data))})
    start_ray()
    source_shards = src.prepare(exp.data)
    target_shards = {t: d.prepare(exp.data) for t, d in tgts.items()}
    names = {t: transfer_name(prefix, data_tag(src), data_tag(d), exp) for t, d in tgts.items()}
    run_cross(exp, source, source_shards, target_shards, adapt, opts.storage_path, prefix,
              opts.local, {**opts.extra, "source_root": source_shards.meta.root,
                           "target_roots": {k: v.meta.root for k, v in target_shards.items()}},
              names)
    return 0


def run_cross(exp: ExperimentConfig, source: str, source_shards: Shards,
              targets: dict[str, Shards], conditions: list[bool], storage_path: str,
              name: str | None = None, local: bool = False, extra: dict | None = None,
              names: dict[str, str] | None = None) -> list[dict]:
    """Table 5: for each target (name -> its shards), train on the source, test on the target,
    without and with domain adaptation; one table, and ``<name or cross>.json``. ``names``:
    each target's run name (default ``<name or cross>-<source>-to-<target>-<config hash>``)."""
    rows, table = [], []
    for target, target_shards in targets.items():
        run = (names or {}).get(target) or transfer_name(name or "cross", source, target, exp)
        planned = plan_transfer(source_shards, target_shards, exp, storage_path, run)
        run_transfer(planned, conditions, local=local)
        for adapt in conditions:
            s = transfer_summary(planned, adapt, extra)
            m = s["metrics"]
            rows.append({"source": source, "target": target, "adaptation": adapt,
                         "run": f"{run}/{CONDITIONS[adapt]}", "uf1": m["uf1"], "uar": m["uar"],
                         "uf1_ci95": m["uf1_ci95"], "uar_ci95": m["uar_ci95"],
                         "n_target_clips": s["n_clips"], "pretrained": s["pretrained"],
                         "synthetic": s["synthetic"], "method": s["method"], **row_flags(s)})
            table.append((marked(f"{source.upper()} -> {target.upper()}", rows[-1]),
                          "yes" if adapt else "no", f"{100 * m['uf1']:.2f}",
                          f"{100 * m['uar']:.2f}", s["n_clips"]))
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
    for line in notes(rows):
        print(line)
    return rows
