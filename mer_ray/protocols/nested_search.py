"""Nested leave-one-subject-out: one hyper-parameter search per outer test subject, none of
which ever reads that subject.

For each outer fold (test subject ``o``):

1. search: Optuna (TPE, seeded by the run's seed and ``o``) proposes ``trials`` configurations
   one after another; each is scored by its mean best-validation UF1 over ``inner_folds`` folds
   drawn from the other subjects, each with validation subjects of its own (an inner fold's
   held-out subject is not read either);
2. the best configuration (ties: the earliest trial) is trained as the outer fold, exactly as a
   LOSO fold is: on every other subject, with validation subjects drawn from them for early
   stopping; ``o`` is predicted once.

The outer predictions make the reported UF1/UAR. Outer folds are independent folds: they run
on the fold slots like LOSO folds, each choosing its configuration (``InnerSearch.choose``)
where it runs, before it trains, with its inner folds trained in the same process by the same
fold runner. They read the shared trunk tokens unless the space searches a setting that
changes them (``config.token_fields``).

A run lives under ``<storage>/<name>/`` like a LOSO run (``folds/<o>/`` holds each outer fold's
records) plus ``search/<o>.json`` (the chosen configuration, every trial and the subjects the
search trained or validated on) and ``search/<o>/t<k>-<inner>.json`` (each inner evaluation:
a restarted outer fold reuses them and asks Optuna the same questions again, so it resumes where
it stopped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..config import ExperimentConfig, token_fields
from ..data.folds import FoldSplit, loso_splits
from ..data.shards import Shards
from ..fitting.job import FoldJob
from ..train.folder import RunFolder
from ..train.jobs import FoldPlan, chosen, outer_job, search_job
from ..train.runner import run_jobs, run_planned
from .loso import LosoRun, plan_loso, planned
from .search_space import optuna_space, refuse_leaky
from .summary import print_summary, summarise_run


def inner_splits(labels_by_subject: dict[str, set], outer: str, n_val: int, seed: int,
                 count: int) -> list[FoldSplit]:
    """``count`` folds over the subjects other than ``outer`` (evenly spaced over their LOSO
    folds, and only folds with validation subjects: the objective is validation UF1)."""
    rest = {s: v for s, v in labels_by_subject.items() if s != outer}
    if len(rest) < 3:
        raise ValueError(f"outer fold {outer}: a nested search needs at least 3 other subjects "
                         f"(an inner fold's training, validation and held-out subject); "
                         f"{len(rest)} left")
    usable = [f for f in loso_splits(rest, n_val, seed) if f.val]
    if not usable:
        raise ValueError("the nested search needs validation subjects: set "
                         "train.val_subjects >= 1")
    pick = np.unique(np.linspace(0, len(usable) - 1, min(count, len(usable))).round()
                     .astype(int))
    return [usable[i] for i in pick]


def _seed(seed: int, outer: str) -> int:
    return int(np.random.SeedSequence([seed, *outer.encode()]).generate_state(1)[0])


@dataclass(frozen=True)
class InnerSearch:
    """An outer fold's search, run where the outer fold runs: ``choose`` scores ``trials``
    configurations on ``inner`` folds (through ``plan``: its shards and tokens), stores every
    inner evaluation and the choice in ``folder``, and returns the outer job with the chosen
    configuration."""

    space: dict
    trials: int
    inner: tuple[FoldSplit, ...]
    plan: FoldPlan
    folder: RunFolder

    def _evaluate(self, o: str, t: int, exp: ExperimentConfig, params: dict) -> list[float]:
        vals = []
        for split in self.inner:
            where = self.folder.inner_record(o, t, split.test)
            if self.folder.exists(where):  # evaluated before this outer fold was restarted
                done = self.folder.read_json(where)
                if done["params"] != params:
                    raise RuntimeError(
                        f"{self.folder.storage.path(where)}: stored for other parameters "
                        f"({done['params']}, asked {params}); remove "
                        f"{self.folder.where('search', o)} to search again")
                vals.append(done["best_val_uf1"])
                continue
            [rec] = run_jobs([search_job(self.plan, split, exp, f"{o}:{t}:{split.test}")],
                             exp.train, local=True, title=None)
            self.folder.write_json({"params": params, "inner_fold": split.to_dict(),
                                    "best_val_uf1": rec.best_val_uf1,
                                    "epochs_run": rec.epochs_run}, where)
            vals.append(rec.best_val_uf1)
        return vals

    def choose(self, job: FoldJob, status=None) -> FoldJob:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        o, base = job.key, job.experiment
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=_seed(base.train.seed, o)))
        space, rows = optuna_space(self.space), []
        for t in range(self.trials):
            if status is not None:
                status(f"search trial {t + 1}/{self.trials}")
            trial = study.ask(space)
            params = dict(trial.params)
            vals = self._evaluate(o, t, base.with_values(params), params)
            study.tell(trial, float(np.mean(vals)))
            rows.append({"trial": t, "params": params, "val_uf1": float(np.mean(vals)),
                         "inner_val_uf1": [float(v) for v in vals]})
        best = max(rows, key=lambda r: (r["val_uf1"], -r["trial"]))
        seen = sorted({s for f in self.inner for s in f.train + f.val})
        if o in seen:  # cannot happen (inner_splits leaves it out); never let it pass
            raise RuntimeError(f"outer subject {o} took part in its own search")
        self.folder.write_json({
            "outer_subject": o, "chosen_params": best["params"], "chosen_trial": best["trial"],
            "best_val_uf1": best["val_uf1"],
            "objective": "mean best-validation UF1 over the inner folds",
            "inner_folds": [f.to_dict() for f in self.inner], "search_subjects": seen,
            "outer_split": job.split.to_dict(), "trials": rows,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }, self.folder.search_record(o))
        return chosen(job, base.with_values(best["params"]), best["params"])


@dataclass
class NestedPlan:
    run: LosoRun  # the outer folds
    space: dict[str, dict]
    trials: int
    inner_folds: int

    def identity(self) -> dict:
        return {"space": self.space, "trials": self.trials, "inner_folds": self.inner_folds}


def plan_nested(shards: Shards, exp: ExperimentConfig, storage, name: str,
                space: dict[str, dict], trials: int, inner_folds: int,
                max_folds: int | None = None) -> NestedPlan:
    refuse_leaky(exp)
    plan = NestedPlan(None, space, trials, inner_folds)
    plan.run = plan_loso(shards, exp, storage, name, max_folds,
                         identity={"nested_search": plan.identity()})
    return plan


def outer_jobs(plan: NestedPlan, tokens) -> list[FoldJob]:
    """Every outer fold as a job carrying its inner search."""
    run = plan.run
    base = run.plan(tokens)
    labels = run.shards.subject_labels()
    tc = run.exp.train
    jobs = []
    for split in run.folds:
        inner = inner_splits(labels, split.test, tc.val_subjects, tc.seed, plan.inner_folds)
        search = InnerSearch(plan.space, plan.trials, tuple(inner), replace(base, folder=None),
                             run.folder)
        jobs.append(outer_job(base, split, search))
    return jobs


def shares_tokens(space: dict) -> bool:
    """Whether every configuration of ``space`` reads the base configuration's trunk tokens:
    not when it searches a setting that changes the tokens or their cached views."""
    return not (token_fields() & set(space))


def run_nested(plan: NestedPlan, local: bool = False) -> list[str]:
    """Every outer fold without stored results: its search and its outer model, on the fold
    slots (or one after another in this process). Returns the outer subjects trained now."""
    run = plan.run
    todo = run.todo()
    if not todo:
        return []
    print(f"{run.name}: {len(todo)} outer fold(s), each searching {plan.trials} "
          f"configuration(s) on {plan.inner_folds} inner fold(s)", flush=True)
    base = planned(run)
    if not shares_tokens(plan.space):  # the trials read the clips
        base = replace(base, shared=None)
    run_planned([replace(base, jobs=lambda tokens: outer_jobs(plan, tokens))], local=local,
                folder=run.folder, title=run.name)
    return [f.test for f in todo]


def nested_record(plan: NestedPlan) -> dict:
    """What the summary says about the search: per outer fold, its chosen configuration and
    the subjects its search saw."""
    run = plan.run
    outer = {}
    for f in run.folds:
        rec = run.folder.read_json(run.folder.search_record(f.test))
        outer[f.test] = {k: rec[k] for k in ("chosen_params", "chosen_trial", "best_val_uf1",
                                              "search_subjects")}
    return {"protocol": "nested LOSO: one search per outer test subject, on the other "
                        "subjects only; outer predictions make the reported figures",
            **plan.identity(), "outer_folds": outer}


def nested_search(exp: ExperimentConfig, shards: Shards, space: dict, opts, name: str,
                  trials: int, inner_folds: int) -> dict:
    """``mer-ray sweep`` (nested, the default): plan, run the outer folds without stored
    results, then write and print the summary of the outer predictions."""
    plan = plan_nested(shards, exp, opts.storage, name, space, trials, inner_folds,
                       opts.max_folds)
    run_nested(plan, local=opts.local)
    summary = summarise_run(plan.run.view(), {**opts.extra, "nested": nested_record(plan)})
    print_summary(summary, plan.run.folder.where())
    return summary
