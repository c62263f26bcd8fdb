"""A LOSO run from aligned shards: its folds trained by the fold runner, its summary written and
printed; with several training seeds, the same run once per seed and the mean and spread."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ExperimentConfig
from ..console import show
from ..metrics import bootstrap_interval
from ..storage import open_storage
from ..train.loso import plan_loso, run_folds
from ..train.results import print_summary, subject_predictions, summarise
from .data import check_shards

FIGURES = ("uf1", "uar", "per_fold_mean_uf1", "per_fold_mean_uar", "uf1_ci95", "uar_ci95")


@dataclass
class RunOptions:
    """How a run is carried out (none of it changes its results)."""

    storage_path: str = "results"
    max_folds: int | None = None
    local: bool = False  # one process instead of Ray Train workers
    seeds: int = 1  # the run repeated with train.seed, +1, ...
    tracking: str | None = None  # mlflow | tensorboard
    tracking_uri: str | None = None
    extra: dict = field(default_factory=dict)  # recorded in every summary


def default_name(shards: str | Path, exp: ExperimentConfig) -> str:
    meta = check_shards(shards, exp)
    return f"{meta.get('dataset', 'data')}-{meta.get('protocol', '')}-{exp.hash()}"


def run_loso(exp: ExperimentConfig, shards: str | Path, opts: RunOptions,
             name: str | None = None, extra: dict | None = None) -> dict:
    """One LOSO run with its summary written and printed; returns the summary."""
    from ..tracking import log_summary, tracker_for

    check_shards(shards, exp)
    setup = plan_loso(shards, exp, opts.storage_path, name or default_name(shards, exp),
                      opts.max_folds)
    tracker = tracker_for(opts.tracking, opts.tracking_uri, setup)
    trained = run_folds(setup, local=opts.local, tracker=tracker)
    reused = len(setup.folds) - len(trained)
    if reused:
        print(f"{reused} fold(s) already had results and were not retrained")
    summary = summarise(setup, {**opts.extra, **(extra or {})})
    log_summary(tracker, setup, summary)
    print_summary(summary, setup.storage.path(setup.name))
    return summary


def run_seeded(exp: ExperimentConfig, shards: str | Path, opts: RunOptions, name: str,
               extra: dict | None = None) -> dict:
    """A LOSO run, or with ``opts.seeds`` > 1 the same run with each training seed: the
    figures (then the mean and standard deviation over seeds), their 95 % bootstrap interval
    over test subjects (of the mean over seeds), and the runs' names and summaries."""
    n = max(1, opts.seeds)
    if n == 1:
        s = run_loso(exp, shards, opts, name, extra)
        return {"runs": [name], "summaries": [s], "seeds": [exp.train.seed],
                **{k: s["metrics"][k] for k in FIGURES}}
    seeds = [exp.train.seed + i for i in range(n)]
    names = [f"{name}-seed{sd}" for sd in seeds]
    summaries = [run_loso(exp.with_values({"train.seed": sd}), shards, opts, nm,
                          {**(extra or {}), "seeds_of": name})
                 for sd, nm in zip(seeds, names)]

    def over_seeds(key):
        vals = [s["metrics"][key] for s in summaries]
        return statistics.mean(vals), statistics.stdev(vals)

    storage = open_storage(opts.storage_path)
    ci = bootstrap_interval([subject_predictions(storage, nm) for nm in names],
                            range(len(summaries[0]["class_names"])), seed=exp.train.seed)
    (uf1, uf1_sd), (uar, uar_sd) = over_seeds("uf1"), over_seeds("uar")
    return {"runs": names, "summaries": summaries, "seeds": seeds,
            "uf1": uf1, "uf1_std": uf1_sd, "uar": uar, "uar_std": uar_sd,
            "per_fold_mean_uf1": over_seeds("per_fold_mean_uf1")[0],
            "per_fold_mean_uar": over_seeds("per_fold_mean_uar")[0],
            "uf1_ci95": ci["uf1"], "uar_ci95": ci["uar"]}


def pm(row: dict, key: str) -> str:
    """A figure in %, with +- std over seeds when there are several, and its interval."""
    text = f"{100 * row[key]:.2f}"
    if f"{key}_std" in row:
        text += f" +- {100 * row[f'{key}_std']:.2f}"
    ci = row.get(f"{key}_ci95")
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def train(exp: ExperimentConfig, shards: str | Path, opts: RunOptions,
          name: str | None = None) -> dict:
    """``mer-ray train``: one LOSO run, or with several seeds one per seed plus a table and a
    ``<name>-seeds.json`` grid file of them (which ``mer-ray report`` shows)."""
    name = name or default_name(shards, exp)
    if opts.seeds <= 1:
        return run_loso(exp, shards, opts, name)
    res = run_seeded(exp, shards, opts, name)
    rows = [{"row": f"seed {sd}", "run": run, **{k: s["metrics"][k] for k in FIGURES},
             "pretrained": s["pretrained"], "synthetic": s["synthetic"]}
            for sd, run, s in zip(res["seeds"], res["runs"], res["summaries"])]
    combined = {k: res[k] for k in ("uf1", "uf1_std", "uar", "uar_std", "uf1_ci95",
                                    "uar_ci95", "seeds", "runs")}
    open_storage(opts.storage_path).write_atomic(json.dumps(
        {"grid": "seeds", "title": f"{name}: {len(res['seeds'])} training seeds",
         "rows": rows, "combined": combined}, indent=1).encode(), f"{name}-seeds.json")
    show(["run", "UF1 % (all folds) [95 % CI]", "UAR % (all folds) [95 % CI]"],
         [(r["row"], pm(r, "uf1"), pm(r, "uar")) for r in rows]
         + [("mean +- std over seeds", pm(combined, "uf1"), pm(combined, "uar"))],
         title=f"{name}: the same LOSO with {len(res['seeds'])} training seeds (interval of "
               f"the mean: bootstrap over test subjects)")
    return combined
