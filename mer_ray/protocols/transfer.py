"""Cross-dataset transfer (Table 5): train on every subject of one dataset, test on another.

One run per (source, target, adaptation) condition; each is a single fold job trained by the
same fold runner as LOSO:

- training and validation subjects come from the source only (validation: whole subjects drawn
  with the run's seed), and early stopping reads source validation UF1 only;
- the target is predicted once, with the best-validation weights;
- with domain adaptation, unlabelled target clips join every training step and enter the
  consistency term only (docs/method.md, section 6). Their labels are replaced by -1 before they reach
  training, so the target's labels cannot steer anything; the adaptation is transductive (the
  clips adapted on are the clips tested), as in the paper's setting.

Records land under ``<storage>/<name>/{no_adaptation,adaptation}/`` in the LOSO layout
(``folds/<target>/fold.json``, ``predictions.parquet``, ``summary.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import ExperimentConfig
from ..console import show
from ..data.choice import DataChoice
from ..data.folds import draw_validation
from ..data.shards import Shards
from ..fitting.job import FoldJob
from ..integrity import marked, notes, row_flags
from ..methods import Method, method_of
from ..model.encoder import BackboneSource
from ..train.folder import RunFolder
from ..train.jobs import FoldPlan, transfer_job
from ..train.runner import PlannedRun, pending, run_planned
from .loso import backbone_for
from .names import data_tag, transfer_name
from .summary import RunView, summarise_run, write_grid_file

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
                  storage, name: str) -> TransferRun:
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
    folder = RunFolder.open(storage, name)
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


def planned(run: TransferRun, conditions: list[bool]) -> PlannedRun:
    """The conditions' folds as the runner takes them (the clips themselves: a transfer shares
    no tokens)."""
    todo = len(pending(condition_jobs(run, conditions)))
    return PlannedRun(run.folder, lambda shared: condition_jobs(run, conditions), todo,
                      run.exp.train)


def run_transfer(run: TransferRun, conditions: list[bool], local: bool = False) -> list[bool]:
    """Train the conditions without stored results (on Ray Train workers, or in this
    process); returns those trained now."""
    todo = {j.key for j in pending(condition_jobs(run, conditions))}
    run_planned([planned(run, conditions)], local=local, folder=run.folder, title=run.name)
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


@dataclass(frozen=True)
class TransferSpec:
    """A transfer, resolved from the command's options: the configuration, the source's and
    each target's data, the conditions (without / with adaptation) and the name prefix."""

    exp: ExperimentConfig
    source: DataChoice
    targets: dict[str, DataChoice]
    conditions: tuple[bool, ...] = (False, True)
    name: str = "cross"

    def run_name(self, target: str) -> str:
        return transfer_name(self.name, data_tag(self.source), data_tag(self.targets[target]),
                             self.exp)


def transfer_spec(exp: ExperimentConfig, source: str, targets: list[str] | None,
                  data: dict[str, DataChoice], conditions: str, name: str | None,
                  annotations: Path | None = None) -> TransferSpec:
    """The transfer the options ask for (``data``: every dataset's choice, the source's
    included)."""
    targets = list(dict.fromkeys(targets or ["casme2", "smic"]))
    if source in targets:
        raise ValueError("a target must differ from the source")
    adapt = {"both": (False, True), "none": (False,), "adapt": (True,)}[conditions]
    return TransferSpec(exp, replace(data[source], annotations=annotations),
                        {t: data[t] for t in targets}, adapt, name or "cross")


def transfer_command(spec: TransferSpec, opts, start_ray) -> int:
    """``mer-ray transfer``: every dataset checked and the run names refused when taken, before
    ``start_ray``; then every target's transfer at once and the table."""
    exp = spec.exp
    for d in (spec.source, *spec.targets.values()):
        d.check()
    for t, d in spec.targets.items():
        RunFolder.open(opts.storage, spec.run_name(t)).check_claim(
            {"config_hash": exp.hash(), "source_shards": str(spec.source.shards_path(exp.data)),
             "target_shards": str(d.shards_path(exp.data))})
    start_ray()
    source = spec.source.prepare(exp.data)
    targets = {t: d.prepare(exp.data) for t, d in spec.targets.items()}
    run_cross(spec, source, targets, replace(opts, extra={
        **opts.extra, "source_root": source.meta.root,
        "target_roots": {k: v.meta.root for k, v in targets.items()}}))
    return 0


def run_cross(spec: TransferSpec, source_shards: Shards, targets: dict[str, Shards],
              opts) -> list[dict]:
    """Table 5: for each target (name -> its shards), train on the source, test on the target,
    without and with domain adaptation, every target's folds at once; one table, and
    ``<name>.json``."""
    exp, conditions, source = spec.exp, list(spec.conditions), source_shards.meta.dataset
    rows, table, runs = [], [], {}
    for target, target_shards in targets.items():
        runs[target] = plan_transfer(source_shards, target_shards, exp, opts.storage,
                                     spec.run_name(target))
    first = next(iter(runs.values()))
    run_planned([planned(r, conditions) for r in runs.values()], local=opts.local,
                folder=first.folder, title=f"{spec.name}: {len(runs)} target(s)")
    for target, plan in runs.items():
        run = plan.name
        for adapt in conditions:
            s = transfer_summary(plan, adapt, opts.extra)
            m = s["metrics"]
            rows.append({"source": source, "target": target, "adaptation": adapt,
                         "run": f"{run}/{CONDITIONS[adapt]}", "uf1": m["uf1"], "uar": m["uar"],
                         "uf1_ci95": m["uf1_ci95"], "uar_ci95": m["uar_ci95"],
                         "n_target_clips": s["n_clips"], "pretrained": s["pretrained"],
                         "synthetic": s["synthetic"], "method": s["method"], **row_flags(s)})
            table.append((marked(f"{source.upper()} -> {target.upper()}", rows[-1]),
                          "yes" if adapt else "no", f"{100 * m['uf1']:.2f}",
                          f"{100 * m['uar']:.2f}", s["n_clips"]))
    write_grid_file(opts.storage, f"{spec.name}.json", "cross_dataset",
                    "Cross-dataset transfer (Table 5)", rows)
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
