"""Leave-one-subject-out runs: plan the folds of a run and claim its folder, train the folds
without stored results through the fold runner, write and print the summary; with several
training seeds, the same run once per seed and the mean and spread.

A run lives under ``<storage>/<name>/`` (``train/folder.py``). Running the same run again
resumes it: finished folds are kept, unfinished ones continue from their last epoch.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ExperimentConfig
from ..console import show
from ..data.choice import DataChoice, frames_from_shards
from ..data.folds import FOLDS_FILE, FoldSplit, fold_file, protocol_splits
from ..data.labels import label_names
from ..data.shards import Shards, is_shard_folder
from ..fitting.job import TokenSource
from ..methods import Method, method_named, method_of
from ..metrics import bootstrap_interval
from ..model.encoder import NO_BACKBONE, BackboneSource, resolve_backbone
from ..records import FoldRecord
from ..storage import Storage, open_storage
from ..train.folder import RunFolder
from ..train.jobs import FoldPlan, loso_jobs
from ..train.runner import PlannedRun, Shared, run_planned
from .names import seed_names
from .summary import RunView, print_summary, subject_predictions, summarise_run, write_grid_file

FIGURES = ("uf1", "uar", "per_fold_mean_uf1", "per_fold_mean_uar", "uf1_ci95", "uar_ci95")


@dataclass
class RunOptions:
    """How a run is carried out (none of it changes its results)."""

    storage_path: str = "results"
    storage: Storage | None = None  # the storage_path opened, once (``__post_init__``)
    max_folds: int | None = None
    local: bool = False  # one process instead of Ray Train workers
    seeds: int = 1  # the run repeated with train.seed, +1, ...
    tracking: str | None = None  # mlflow | tensorboard
    tracking_uri: str | None = None
    extra: dict = field(default_factory=dict)  # recorded in every summary

    def __post_init__(self):
        if self.storage is None:
            self.storage = open_storage(self.storage_path)


@dataclass
class LosoRun:
    """A planned run: its folder (claimed), shards, configuration, folds and backbone."""

    folder: RunFolder
    shards: Shards
    exp: ExperimentConfig
    folds: list[FoldSplit]
    backbone: BackboneSource
    subjects: int = 0  # every subject's fold; more than len(folds) when --max-folds cut some
    method: Method | None = None  # what fits its folds, resolved once

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def partial(self) -> dict | None:
        """For a run of part of the folds (``--max-folds``): how many of how many."""
        if len(self.folds) < self.subjects:
            return {"folds": len(self.folds), "of": self.subjects}
        return None

    def view(self) -> RunView:
        return RunView(self.folder, self.exp, self.shards.class_names,
                       tuple(f.test for f in self.folds), str(self.shards.root),
                       self.shards.meta)

    def plan(self, tokens: TokenSource | None = None, tracking=None) -> FoldPlan:
        return FoldPlan(self.exp, self.shards, self.backbone, tokens, self.folder, tracking,
                        self.method)

    def todo(self) -> list[FoldSplit]:
        return [f for f in self.folds if not self.folder.fold_done(f.test)]


def settle(data: DataChoice, exp: ExperimentConfig, user_set: set[str]) -> ExperimentConfig:
    """Before Ray starts: the data choice checked and, for given shards, the frame settings
    taken from them (a conflicting setting the user made is refused)."""
    data.check()
    if data.shards is not None:
        shards = data.handle()
        method = method_named(exp.model.method)
        if method.needs_flow and shards.meta.data.flow is None:
            raise ValueError(
                f"{shards.root}: these shards have no optical flow, and model.method="
                f"{method.name} reads it: prepare shards with it (mer-ray prepare ... --flow "
                f"tvl1, or farneback / dis) and pass those with --shards, or give --data-root "
                f"with --flow tvl1")
        exp = frames_from_shards(exp, shards, user_set)
    method_of(exp)  # a known method, with the flow it needs
    return exp


def refuse_clashes(data: DataChoice, exp: ExperimentConfig, storage: Storage | str,
                   names: list[str], identity: dict | None = None,
                   config_known: bool = True) -> None:
    """Before Ray starts: refuse run names whose folders hold other runs, judged by what is
    known now (the configuration, the shard folder, and its content id when it exists).
    ``config_known=False``: the run's configuration is decided later (a search's pick), so
    only its data is judged now."""
    where = data.shards_path(exp.data)
    known = {"config_hash": exp.hash()} if config_known else {}
    known["shards"] = str(where)
    if data.shards is not None:
        known["shards_id"] = data.handle().meta.shards_id
    elif is_shard_folder(where):
        known["shards_id"] = Shards.open(where).meta.shards_id
    for name in names:
        RunFolder.open(storage, name).check_claim({**known, **(identity or {})})


def plan_loso(shards: Shards, exp: ExperimentConfig, storage: Storage | str | Path,
              name: str, max_folds: int | None = None,
              identity: dict | None = None) -> LosoRun:
    """The folds of a run and its folder; a folder that holds another run (other
    configuration, other clips, or another ``identity``: e.g. a nested search's space and
    budget) is refused."""
    shards.check(exp.data)
    every = protocol_splits(shards.meta.protocol, shards.subject_labels(),
                            exp.train.val_subjects, exp.train.seed)
    subjects = len(every)
    folds = every[:max_folds] if max_folds else every
    folder = RunFolder.open(storage, name)
    meta = shards.meta
    folder.claim(
        {"config_hash": exp.hash(), "config": exp.to_dict(), "shards": str(shards.root),
         "shards_id": meta.shards_id, "folds": [f.test for f in folds],
         # what a model trained here needs at prediction time (mer-ray checkpoint)
         "class_names": list(meta.class_names), "preprocess": meta.config,
         "dataset": meta.dataset, "protocol": meta.protocol, "synthetic": meta.synthetic},
        {"config_hash": exp.hash(), "shards": str(shards.root), "shards_id": meta.shards_id,
         **(identity or {})})
    write_fold_file(folder, shards, every, exp.train.seed)  # all of them, even with max_folds
    method = method_of(exp)
    return LosoRun(folder, shards, exp, folds, backbone_for(exp, method), subjects, method)


def write_fold_file(folder: RunFolder, shards: Shards, folds: list[FoldSplit],
                    seed: int) -> None:
    """The run's ``folds.json`` (``data.folds.fold_file``: every fold of the protocol, also
    when the run trains the first few), once: the folds are fixed by the shards and the seed,
    which the folder's claim already holds to."""
    if not folder.exists(folder.rel(FOLDS_FILE)):
        folder.write_json(folds_content(shards, folds, seed), folder.rel(FOLDS_FILE))


def folds_content(shards: Shards, folds: list[FoldSplit], seed: int) -> dict:
    """``data.folds.fold_file`` of these folds over the shards' clips (a run's ``folds.json``,
    and what ``mer-ray folds`` writes)."""
    meta = shards.meta
    keys, ids = shards.clip_labels(sorted({s for f in folds for s in (*f.tested, *f.val,
                                                                       *f.train)}))
    return fold_file(folds, keys, label_names(meta.protocol, meta.class_names, ids),
                     meta.dataset, meta.protocol, seed)


def backbone_for(exp: ExperimentConfig, method: Method) -> BackboneSource:
    """Where the backbone's weights come from, decided here once for every fold; methods
    without a backbone have none."""
    return resolve_backbone(exp.model) if method.uses_backbone else NO_BACKBONE


def shared_tokens(run: LosoRun, use_gpu: bool, slots: int,
                  compute: bool = True) -> TokenSource | None:
    """What the run's folds share (its method's ``shared_inputs``: with the trunk cache, the
    paper model's token folder), made now when ``compute``; None when there is nothing."""
    return run.method.shared_inputs(run.shards, run.exp, run.backbone, use_gpu, slots, compute)


def planned(run: LosoRun, tracker=None) -> PlannedRun:
    """The run's folds as the runner takes them. ``tracker``: a ``tracking.TrackingSpec``
    (each fold logs its epochs)."""
    return PlannedRun(run.folder, lambda tokens: loso_jobs(run.plan(tokens, tracker), run.folds),
                      len(run.todo()), run.exp.train,
                      Shared(run.method, run.shards, run.exp, run.backbone))


def train_folds(run: LosoRun, local: bool = False, tracker=None) -> list[FoldRecord]:
    """Train every fold without stored results; returns their records. ``local``: one after
    another in this process instead of on Ray Train workers (the same folds, the same
    predictions)."""
    return run_planned([planned(run, tracker)], local=local, folder=run.folder, title=run.name)


@dataclass
class Planned:
    """A LOSO run planned for the runner, and what its summary will record."""

    run: LosoRun
    extra: dict
    tracker: object = None


def plan_run(exp: ExperimentConfig, shards: Shards, opts: RunOptions, name: str,
             extra: dict | None = None) -> Planned:
    from ..tracking import tracker_for

    run = plan_loso(shards, exp, opts.storage, name, opts.max_folds)
    partial = {"partial": run.partial} if run.partial else {}
    return Planned(run, {**opts.extra, **partial, **(extra or {})},
                   tracker_for(opts.tracking, opts.tracking_uri, run.folder))


def train_planned(plans: list[Planned], opts: RunOptions, title: str) -> list[dict]:
    """Every planned run's folds through the runner at once (one slot pool), then each run's
    summary written and printed; returns the summaries, in order."""
    from ..tracking import log_summary

    trained = run_planned([planned(p.run, p.tracker) for p in plans], local=opts.local,
                          folder=plans[0].run.folder, title=title)
    reused = sum(len(p.run.folds) for p in plans) - len(trained)
    if reused:
        print(f"{reused} fold(s) already had results and were not retrained")
    summaries = []
    for p in plans:
        summary = summarise_run(p.run.view(), p.extra)
        log_summary(p.tracker, p.run.folder, summary)
        print_summary(summary, p.run.folder.where())
        summaries.append(summary)
    return summaries


def run_loso(exp: ExperimentConfig, shards: Shards, opts: RunOptions, name: str,
             extra: dict | None = None) -> dict:
    """One LOSO run with its summary written and printed; returns the summary."""
    [summary] = train_planned([plan_run(exp, shards, opts, name, extra)], opts, name)
    return summary


def plan_seeded(exp: ExperimentConfig, shards: Shards, opts: RunOptions, name: str,
                extra: dict | None = None) -> list[Planned]:
    """The run, or with ``opts.seeds`` > 1 the same run once per training seed."""
    names = seed_names(name, exp.train.seed, opts.seeds)
    if len(names) == 1:
        return [plan_run(exp, shards, opts, name, extra)]
    return [plan_run(exp.with_values({"train.seed": exp.train.seed + i}), shards, opts, nm,
                     {**(extra or {}), "seeds_of": name}) for i, nm in enumerate(names)]


def over_seeds(summaries: list[dict], names: list[str], storage, seed: int) -> dict:
    """A run's figures, or with several seeds the mean and standard deviation over them and
    their 95 % bootstrap interval over test subjects (of the mean over seeds); with the runs'
    names and summaries."""
    seeds = [s["seed"] for s in summaries]
    if len(summaries) == 1:
        s = summaries[0]
        return {"runs": names, "summaries": summaries, "seeds": seeds,
                **{k: s["metrics"][k] for k in FIGURES}}

    def spread(key):
        vals = [s["metrics"][key] for s in summaries]
        return statistics.mean(vals), statistics.stdev(vals)

    ci = bootstrap_interval([subject_predictions(storage, nm) for nm in names],
                            range(len(summaries[0]["class_names"])), seed=seed)
    (uf1, uf1_sd), (uar, uar_sd) = spread("uf1"), spread("uar")
    return {"runs": names, "summaries": summaries, "seeds": seeds,
            "uf1": uf1, "uf1_std": uf1_sd, "uar": uar, "uar_std": uar_sd,
            "per_fold_mean_uf1": spread("per_fold_mean_uf1")[0],
            "per_fold_mean_uar": spread("per_fold_mean_uar")[0],
            "uf1_ci95": ci["uf1"], "uar_ci95": ci["uar"]}


def run_seeded(exp: ExperimentConfig, shards: Shards, opts: RunOptions, name: str,
               extra: dict | None = None) -> dict:
    """A LOSO run, or with ``opts.seeds`` > 1 the same run with each training seed, all their
    folds through one runner: ``over_seeds``' figures."""
    plans = plan_seeded(exp, shards, opts, name, extra)
    summaries = train_planned(plans, opts, name)
    return over_seeds(summaries, [p.run.name for p in plans], plans[0].run.folder.storage,
                      exp.train.seed)


def pm(row: dict, key: str) -> str:
    """A figure in %, with +- std over seeds when there are several, and its interval."""
    text = f"{100 * row[key]:.2f}"
    if f"{key}_std" in row:
        text += f" +- {100 * row[f'{key}_std']:.2f}"
    ci = row.get(f"{key}_ci95")
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def train(exp: ExperimentConfig, shards: Shards, opts: RunOptions, name: str) -> dict:
    """``mer-ray train``: one LOSO run, or with several seeds one per seed plus a table and a
    ``<name>-seeds.json`` grid file of them (which ``mer-ray report`` shows)."""
    if opts.seeds <= 1:
        return run_loso(exp, shards, opts, name)
    res = run_seeded(exp, shards, opts, name)
    rows = [{"row": f"seed {sd}", "run": run, **{k: s["metrics"][k] for k in FIGURES},
             "pretrained": s["pretrained"], "synthetic": s["synthetic"]}
            for sd, run, s in zip(res["seeds"], res["runs"], res["summaries"])]
    combined = {k: res[k] for k in ("uf1", "uf1_std", "uar", "uar_std", "uf1_ci95",
                                    "uar_ci95", "seeds", "runs")}
    write_grid_file(opts.storage, f"{name}-seeds.json", "seeds",
                    f"{name}: {len(res['seeds'])} training seeds", rows, combined=combined)
    show(["run", "UF1 % (all folds) [95 % CI]", "UAR % (all folds) [95 % CI]"],
         [(r["row"], pm(r, "uf1"), pm(r, "uar")) for r in rows]
         + [("mean +- std over seeds", pm(combined, "uf1"), pm(combined, "uar"))],
         title=f"{name}: the same LOSO with {len(res['seeds'])} training seeds (interval of "
               f"the mean: bootstrap over test subjects)")
    return combined

