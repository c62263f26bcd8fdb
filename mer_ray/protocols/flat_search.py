"""Flat hyper-parameter search with Ray Tune and Optuna, steered by validation figures only,
then (unless skipped) the pick's LOSO, whose figures are search-informed.

Each trial takes one configuration and trains a fixed set of folds in its own process (fold jobs
without a test split, through the fold runner: their test subjects are not even read) and
reports the mean best-validation UF1 after each fold. Optuna proposes the next configuration
from those numbers; ASHA (optional) stops trials whose running figure falls behind after the
same number of epochs trained: with ASHA on, a trial also reports after every epoch (the mean
over its finished folds and the current fold's best validation UF1 so far).

The search's folds' subjects also appear as test subjects of the pick's LOSO, so that LOSO's
figures are marked ``search_informed``; the nested search (``nested_search.py``) is the strict
protocol.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback

from ..config import ExperimentConfig
from ..console import Ticker, params_text, show
from ..data.folds import FoldSplit
from ..fitting.device import use_gpus
from ..train.jobs import FoldPlan, search_job
from ..train.runner import run_jobs
from ..train.slots import fold_resources, fold_slots
from .loso import LosoRun, RunOptions, plan_loso, run_loso
from .names import best_name
from .search_space import SweepInterrupted, refuse_leaky

METRIC = "val_uf1"
TRIALS_FILE = "trials.parquet"
_TICKERS: list = []  # the running search's console ticker, for TrialLines (in the driver)


@contextlib.contextmanager
def interrupt_watch():
    """Whether Ctrl-C reached Tune while it ran. Tune answers the first SIGINT by ending the
    run gracefully (it saves the state) and then puts back the handler it found: the one
    installed here, so finding it installed again afterwards means the signal came. A signal
    after Tune is done reaches that handler and interrupts the program as usual."""
    import signal
    import threading

    def sentinel(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, sentinel)
    fired, done = [], threading.Event()

    def say():  # Tune puts the sentinel back the moment the signal comes: say so at once
        tune_holds = False
        while not done.wait(0.2):
            if signal.getsignal(signal.SIGINT) is not sentinel:
                tune_holds = True  # Tune's handler is in place
            elif tune_holds:
                print("interrupted: Ray Tune is saving the search's state (finished trials are "
                      "kept; running the same command again resumes it)", file=sys.stderr,
                      flush=True)
                return

    watcher = threading.Thread(target=say, daemon=True)
    try:
        with contextlib.suppress(Exception):
            watcher.start()
        yield lambda: bool(fired)
    finally:
        done.set()
        if signal.getsignal(signal.SIGINT) is sentinel:
            fired.append(True)
        signal.signal(signal.SIGINT, previous)


class TrialLines(Callback):
    """A Tune callback (Tune saves it with the search, so a resumed search keeps it) that
    prints a line per finished trial and keeps the console ticker's detail current."""

    def __init__(self, total: int):
        self.total = total

    @staticmethod
    def _count(trials) -> tuple[int, int]:
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        return done, sum(t.status == "RUNNING" for t in trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        done, running = self._count(trials)
        for tick in _TICKERS:
            tick.update(f"{done}/{self.total} trials done, {running} running")

    def on_trial_complete(self, iteration, trials, trial, **info):
        done, _ = self._count(trials)
        value = (trial.last_result or {}).get(METRIC)
        params = params_text(trial.config or {})
        for tick in _TICKERS:
            tick.say(f"[{done}/{self.total}] trial {trial.trial_id}: validation UF1 "
                     + ("-" if value is None else f"{value:.3f}") + f" ({params})")


FINISHED = "finished"  # under the run folder: a record per trial Tune finished properly


class TrialRecords(Callback):
    """The project's own record of every trial that ended as a trial should (its function
    returned, or the scheduler stopped it): ``<run>/finished/<trial id>.json``, written in the
    driver when Tune completes the trial. Tune's own status is not enough: a trial that Ctrl+C
    cut short is stopped on the way out and may be saved as TERMINATED, and a restore does not
    run terminated trials again (``requeue_unfinished`` puts those without a record back)."""

    def __init__(self, storage_uri: str, run: str):
        self.storage_uri, self.run = storage_uri, run

    def on_trial_complete(self, iteration, trials, trial, **info):
        from ..storage import open_storage

        open_storage(self.storage_uri).write_atomic(json.dumps(
            {"trial_id": trial.trial_id, "config": trial.config,
             "last_result": {k: v for k, v in (trial.last_result or {}).items()
                             if isinstance(v, (int, float, str, bool, type(None)))}},
            default=str).encode(), self.run, FINISHED, f"{trial.trial_id}.json")


def finished_trials(folder) -> set[str]:
    """The ids of the trials with a record in ``<run>/finished/``."""
    return {name[:-len(".json")] for name in folder.storage.listdir(folder.name, FINISHED)
            if name.endswith(".json")}


def requeue_unfinished(folder, tune_dir: str) -> list[str]:
    """Before a restore: every trial of the saved search that Tune holds as TERMINATED but that
    has no finished record, and whose last result is not its function's return, is set back to
    PENDING in the saved state, so the restore runs it again (from the start: the trials keep no
    checkpoints). Returns their ids."""
    storage = folder.storage
    states = sorted(n for n in storage.listdir(folder.name, tune_dir)
                    if n.startswith("experiment_state-") and n.endswith(".json"))
    if not states:
        return []
    newest = (folder.name, tune_dir, states[-1])
    state = json.loads(storage.read_bytes(*newest))
    finished, again = finished_trials(folder), []
    for pair in state.get("trial_data", []):
        trial = json.loads(pair[0])
        meta = json.loads(pair[1]) if isinstance(pair[1], str) else pair[1]
        last = (meta or {}).get("last_result") or {}
        if isinstance(last, str):
            last = json.loads(last)
        if trial.get("status") == "TERMINATED" and trial.get("trial_id") not in finished \
                and not last.get("done"):
            trial["status"] = "PENDING"
            pair[0] = json.dumps(trial, indent=2)
            again.append(trial["trial_id"])
    if again:
        storage.write_atomic(json.dumps(state).encode(), *newest)
    return again


def trial(params: dict[str, Any], context: dict) -> None:
    """Tune function trainable: validation UF1 of one configuration over the sweep's folds,
    trained one after another in this trial's process (which holds one fold's resources)."""
    from ray import tune

    exp = ExperimentConfig.from_dict(context["experiment"]).with_values(params)
    plan: FoldPlan = context["plan"]
    vals: list[float] = []
    clock = {"epochs": 0, "best": -1.0}

    def report(job, row: dict, last: bool) -> None:
        clock["best"] = max(clock["best"], row.get("val_uf1", -1.0))
        epochs = clock["epochs"] + int(row["epoch"]) + 1
        if not last:
            if context["asha"]:  # the running figure, on a clock of epochs trained
                tune.report({METRIC: float(np.mean(vals + [clock["best"]])),
                             "folds_done": len(vals), "epochs_done": epochs})
            return
        vals.append(clock["best"])
        clock.update(epochs=epochs, best=-1.0)
        tune.report({METRIC: float(np.mean(vals)), "folds_done": len(vals),
                     "epochs_done": epochs, "fold_val_uf1": vals[-1],
                     "epochs_run": int(row["epoch"]) + 1})

    jobs = [search_job(plan, split, exp) for split in context["folds"]]
    run_jobs(jobs, exp.train, local=True, title=None, report=report, use_gpu=context["use_gpu"])


def sweep_folds(run: LosoRun, n_folds: int) -> list[FoldSplit]:
    """The fixed folds every trial evaluates: evenly spaced over the LOSO folds, and only folds
    with validation subjects (the objective is validation UF1)."""
    usable = [f for f in run.folds if f.val]
    if not usable:
        raise ValueError("the sweep needs validation subjects: set train.val_subjects >= 1")
    pick = np.unique(np.linspace(0, len(usable) - 1, min(n_folds, len(usable))).round()
                     .astype(int))
    return [usable[i] for i in pick]


@dataclass(frozen=True)
class FlatSpec:
    """A flat search: its space (Tune domains), how many trials on how many folds each, ASHA
    or not, where Optuna keeps its study, and configurations to evaluate first."""

    space: dict[str, Any]
    num_samples: int = 16
    folds: int = 3
    asha: bool = False
    study_db: str | None = None
    points: list[dict] | None = None  # Optuna's points_to_evaluate


def _tuner(run: LosoRun, trainable, spec: FlatSpec, folds: int, slots: int, path: str):
    """A new Tune run of the search, or the one saved at ``path``, resumed."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if tune.Tuner.can_restore(path):
        again = requeue_unfinished(run.folder, path.rsplit("/", 1)[1])
        print(f"resuming the sweep in {path}"
              + (f" ({len(again)} trial(s) cut short by the last stop run again)"
                 if again else ""))
        return tune.Tuner.restore(path, trainable, resume_errored=True)
    tc = run.exp.train
    storage = None
    if spec.study_db:
        storage = optuna.storages.RDBStorage(f"sqlite:///{Path(spec.study_db).resolve()}")
    searcher = OptunaSearch(metric=METRIC, mode="max", study_name=run.name, storage=storage,
                            points_to_evaluate=spec.points,
                            sampler=optuna.samplers.TPESampler(seed=tc.seed))
    return tune.Tuner(
        trainable, param_space=spec.space,
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=spec.num_samples,
            max_concurrent_trials=slots,
            # The clock is epochs trained over the trial's folds: a trial is compared with
            # others after the same amount of training, first after one fold's worth.
            scheduler=ASHAScheduler(metric=METRIC, mode="max", time_attr="epochs_done",
                                    max_t=folds * tc.max_epochs, grace_period=tc.max_epochs)
            if spec.asha else None),
        run_config=tune.RunConfig(name="tune", storage_path=path.rsplit("/", 1)[0], verbose=0,
                                  callbacks=[TrialLines(spec.num_samples),
                                             TrialRecords(run.folder.storage.uri, run.name)]))


def _trials_table(results, space: dict, num_samples: int, path: str, interrupted: bool,
                  finished: set[str]):
    """The trials as a table; a search stopped before every trial finished raises.

    A trial is finished when it has a finished record (``TrialRecords``: its function
    returned, or the scheduler stopped it), or its last result is its function's return, or
    it raised. Tune's own status is not trusted for this: a trial cut short by Ctrl+C may be
    saved as TERMINATED."""
    import polars as pl

    done = [r for r in results if r.error is None and (
        (r.metrics or {}).get("done") or (r.metrics or {}).get("trial_id") in finished)]
    if interrupted or len(done) + results.num_errors < num_samples:
        raise SweepInterrupted(
            f"the sweep stopped with {len(done) + results.num_errors} of {num_samples} "
            f"trials finished; run the same command again to resume it from {path}")
    rows = []
    for i, r in enumerate(results):
        m = r.metrics or {}
        rows.append({"trial": creation_index(r, i), "trial_id": m.get("trial_id"),
                     **{k: v for k, v in (r.config or {}).items() if k in space},
                     METRIC: m.get(METRIC), "folds_done": m.get("folds_done", 0),
                     "epochs_done": m.get("epochs_done", 0),
                     "error": None if r.error is None else str(r.error)[:500]})
    return pl.DataFrame(rows).sort("trial")


def creation_index(result, fallback: int) -> int:
    """The order in which Tune created a trial (0 for the first): its folder's name carries it
    (``<trainable>_<trial id>_<k>_<params>``, k from 1). A resumed search's results come back in
    another order, and the ties of the pick go to the earliest trial, so the order must be the
    trials' own."""
    name = str(getattr(result, "path", "") or "").rstrip("/").rsplit("/", 1)[-1]
    trial_id = (result.metrics or {}).get("trial_id")
    found = re.search(rf"_{re.escape(trial_id)}_(\d+)_", name) if trial_id else None
    return int(found.group(1)) - 1 if found else fallback


def run_sweep(run: LosoRun, spec: FlatSpec):
    """Run (or resume) the search; returns (best params, trials table as a polars DataFrame).
    TPE is seeded by the run's seed."""
    import polars as pl
    from ray import tune

    tc = run.exp.train
    use_gpu = use_gpus(tc.use_gpu, on_ray=True)  # decided here, once, for every trial
    folds = sweep_folds(run, spec.folds)
    # The trials read the aligned clips (each computes its own trunk tokens).
    plan = FoldPlan(run.exp, run.shards, run.backbone, folder=run.folder, method=run.method)
    context = {"experiment": run.exp.to_dict(), "plan": plan, "asha": spec.asha,
               "folds": folds, "use_gpu": use_gpu}
    # A trial trains its folds itself: it holds what one fold worker would.
    resources = {k.lower() if k in ("CPU", "GPU") else k: v
                 for k, v in fold_resources(tc, use_gpu).items()}
    trainable = tune.with_resources(tune.with_parameters(trial, context=context), resources)
    path = f"{run.folder.storage.uri.rstrip('/')}/{run.name}/tune"  # a folder or a URI
    tuner = _tuner(run, trainable, spec, len(folds), fold_slots(tc, use_gpu), path)
    # Tune prints its own banner on stdout: it goes to a log file, our lines to the console.
    logs = run.folder.logs_dir
    log = Path(logs) / "tune.log" if logs else Path(os.devnull)
    log.parent.mkdir(parents=True, exist_ok=True)
    with Ticker(f"{run.name}: searching {spec.num_samples} configuration(s) on {len(folds)} "
                f"fold(s)") as tick, open(log, "a") as sink, \
            contextlib.redirect_stdout(sink), interrupt_watch() as interrupted:
        _TICKERS.append(tick)
        try:
            results = tuner.fit()
        finally:
            _TICKERS.remove(tick)
    table = _trials_table(results, spec.space, spec.num_samples, path, interrupted(),
                          finished_trials(run.folder))
    done = table.filter(pl.col("error").is_null() & (pl.col("folds_done") == len(folds)))
    if done.is_empty():
        raise RuntimeError(f"no trial finished all {len(folds)} folds; see {path}")
    # ties: the earliest trial (Tune's trial ids are random, their order is not the trials')
    best_row = done.sort([METRIC, "trial"], descending=[True, False]).row(0, named=True)
    best = {k: best_row[k] for k in spec.space}
    run.folder.storage.write_parquet(table, run.name, TRIALS_FILE)
    run.folder.write_json({
        "best_params": best, "best_val_uf1": best_row[METRIC], "metric": METRIC,
        "objective": "mean best-validation UF1 over the sweep folds (test subjects not read)",
        "sweep_folds": [f.test for f in folds],
        # Subjects whose clips the search trained or validated on. A later LOSO tests each of
        # them too; its figures are strictly untouched by the search only for other subjects
        # (a nested search, one sweep per outer fold, is the strict protocol).
        "search_subjects": sorted({s for f in folds for s in f.train + f.val}),
        "num_samples": spec.num_samples, "asha": spec.asha,
        "study_db": str(spec.study_db) if spec.study_db else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, run.folder.rel("sweep.json"))
    return best, table


def flat_search(exp: ExperimentConfig, shards, spec: FlatSpec, opts: RunOptions, name: str,
                final: bool = True) -> dict:
    """``mer-ray sweep --flat``: the search, its table, and (``final``) the pick's LOSO run
    ``<name>-best``, marked search-informed. Returns the best configuration."""
    refuse_leaky(exp)
    run = plan_loso(shards, exp, opts.storage, name)
    best, table = run_sweep(run, spec)
    rounded = table.with_columns(
        [table[c].round(4) for c, t in zip(table.columns, table.dtypes) if t.is_float()])
    show(list(rounded.columns), rounded.rows(),
         title=f"sweep {name}: objective = mean validation UF1 over the sweep folds")
    print("best configuration: " + params_text(best))
    if final:
        record = run.folder.read_json(run.folder.rel("sweep.json"))
        run_loso(exp.with_values(best), shards, opts, best_name(name),
                 {"sweep": name, "best_params": best, "search_informed": True,
                  "search_subjects": record["search_subjects"]})
    return best
