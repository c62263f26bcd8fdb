"""Hyper-parameter search with Ray Tune and Optuna, steered by validation figures only.

Each trial takes one configuration, trains a fixed set of folds in its own process (the same
``fit_fold`` the LOSO workers run, with ``predict_test=False``: the folds' test subjects are not
even read) and reports the mean best-validation UF1 after each fold. Optuna proposes the next
configuration from those numbers; ASHA (optional) stops trials whose running figure falls behind
after the same number of epochs trained: with ASHA on, a trial also reports after every epoch
(the mean over its finished folds and the current fold's best validation UF1 so far). The best configuration is then run as a full LOSO
and that run's test figures are the ones to report.

The search space is a YAML mapping of ``section.field`` to a distribution::

    loss.lambda1: {type: loguniform, low: 0.01, high: 1.0}
    model.lora_rank: {type: choice, values: [4, 8, 16]}

Types: uniform, loguniform (low, high), randint (low, high exclusive), choice (values).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ExperimentConfig, load_yaml
from ..data.folds import FoldSplit

METRIC = "val_uf1"


class SweepInterrupted(RuntimeError):
    """The search was stopped before every trial finished; its state is saved for a resume."""


TRIALS_FILE = "trials.parquet"


@contextlib.contextmanager
def _interrupt_watch():
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
    fired = []
    try:
        yield lambda: bool(fired)
    finally:
        if signal.getsignal(signal.SIGINT) is sentinel:
            fired.append(True)
        signal.signal(signal.SIGINT, previous)


SPACE_TYPES = ("uniform", "loguniform", "randint", "choice")


def read_space(path: str | Path) -> dict[str, dict]:
    """The search space file, checked: ``section.field`` -> its distribution spec."""
    known = ExperimentConfig().to_dict()
    space = {}
    for key, spec in load_yaml(path).items():
        section, _, name = key.partition(".")
        if section not in known or name not in known[section]:
            raise ValueError(f"{path}: {key!r} is not a config field (section.field, e.g. "
                             f"loss.lambda1)")
        if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
            raise ValueError(f"{path}: {key}: expected {{type: {' | '.join(SPACE_TYPES)}, ...}}")
        need = ("values",) if spec["type"] == "choice" else ("low", "high")
        missing = [k for k in need if k not in spec]
        if missing:
            raise ValueError(f"{path}: {key}: {spec['type']} needs {', '.join(missing)}")
        space[key] = dict(spec)
    if not space:
        raise ValueError(f"{path}: empty search space")
    return space


def tune_space(space: dict[str, dict]) -> dict[str, Any]:
    """Ray Tune domains for a checked space."""
    from ray import tune

    makers = {
        "uniform": lambda s: tune.uniform(float(s["low"]), float(s["high"])),
        "loguniform": lambda s: tune.loguniform(float(s["low"]), float(s["high"])),
        "randint": lambda s: tune.randint(int(s["low"]), int(s["high"])),
        "choice": lambda s: tune.choice(list(s["values"])),
    }
    return {k: makers[s["type"]](s) for k, s in space.items()}


def optuna_space(space: dict[str, dict]) -> dict[str, Any]:
    """Optuna distributions for a checked space (randint's high is exclusive, as in Tune)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    makers = {
        "uniform": lambda s: FloatDistribution(float(s["low"]), float(s["high"])),
        "loguniform": lambda s: FloatDistribution(float(s["low"]), float(s["high"]), log=True),
        "randint": lambda s: IntDistribution(int(s["low"]), int(s["high"]) - 1),
        "choice": lambda s: CategoricalDistribution(list(s["values"])),
    }
    return {k: makers[s["type"]](s) for k, s in space.items()}


def load_space(path: str | Path) -> dict[str, Any]:
    """Tune search-space domains from the YAML file at ``path``."""
    return tune_space(read_space(path))


def trial(params: dict[str, Any], context: dict) -> None:
    """Tune function trainable: validation UF1 of one configuration over the sweep's folds.
    Each fold is a fold job without a test split (its test subject is never read), run by the
    fold runner in this trial's process, which holds one fold's resources."""
    import torch
    from ray import tune

    from ..train.runner import run_job, trunk_cache_key

    exp = ExperimentConfig.from_dict(context["experiment"]).with_values(params)
    torch.set_num_threads(exp.train.cpus_per_fold)
    device = torch.device("cuda" if context["use_gpu"] else "cpu")
    tokens: dict = {}
    vals: list[float] = []
    epochs_done = 0

    def every_epoch(i: int):
        """With ASHA: after each epoch, the mean over the folds done and the current fold's
        best validation UF1 so far, on a clock of epochs trained (ASHA's time_attr)."""
        best = [-1.0]

        def report(_state, row):
            best[0] = max(best[0], row.get("val_uf1", -1.0))
            tune.report({METRIC: float(np.mean(vals + [best[0]])), "folds_done": i,
                         "epochs_done": epochs_done + int(row["epoch"]) + 1})
        return report

    for i, job in enumerate(search_jobs(context, exp)):
        cache = tokens.setdefault(trunk_cache_key(job), {}) if exp.train.cache_trunk else None
        rec = run_job(job, device, cache,
                      on_epoch=every_epoch(i) if context.get("asha") else None).record
        vals.append(rec.best_val_uf1)
        epochs_done += rec.epochs_run
        tune.report({METRIC: float(np.mean(vals)), "folds_done": i + 1,
                     "epochs_done": epochs_done, "fold_val_uf1": rec.best_val_uf1,
                     "epochs_run": rec.epochs_run})


def search_jobs(context: dict, exp: ExperimentConfig):
    """The sweep folds as fold jobs with training and validation splits only."""
    from ..data.shards import clips_root
    from ..train.job import FoldJob, SplitSource

    root = str(clips_root(context["shards"]))
    for split, counts in zip(context["folds"], context["label_counts"]):
        sources = {"train": SplitSource(root, split.train)}
        if split.val:
            sources["val"] = SplitSource(root, split.val)
        yield FoldJob(key=split.test, experiment=exp, class_names=tuple(context["class_names"]),
                      split=split, sources=sources, label_counts=tuple(counts))


def sweep_folds(setup, n_folds: int) -> list[FoldSplit]:
    """The fixed folds every trial evaluates: evenly spaced over the LOSO folds, and only folds
    with validation subjects (the objective is validation UF1)."""
    usable = [f for f in setup.folds if f.val]
    if not usable:
        raise ValueError("the sweep needs validation subjects: set train.val_subjects >= 1")
    pick = np.unique(np.linspace(0, len(usable) - 1, min(n_folds, len(usable))).round()
                     .astype(int))
    return [usable[i] for i in pick]


def run_sweep(setup, space: dict[str, Any], num_samples: int, n_folds: int,
              asha: bool = False, study_db: str | None = None, seed: int = 0,
              points: list[dict] | None = None):
    """Run (or resume) the search; returns (best params, trials table as a polars DataFrame).
    ``points``: configurations to evaluate first (Optuna's ``points_to_evaluate``)."""
    import optuna
    import polars as pl
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from ..data.shards import label_counts
    from ..train.runner import fold_resources, fold_slots, wants_gpu

    tc = setup.exp.train
    use_gpu = wants_gpu(tc)
    folds = sweep_folds(setup, n_folds)
    context = {
        "experiment": setup.exp.to_dict(), "class_names": setup.class_names,
        "shards": setup.shards, "use_gpu": use_gpu, "asha": asha, "folds": folds,
        "label_counts": [label_counts(setup.shards, f.train, len(setup.class_names))
                         for f in folds],
    }
    # A trial trains its folds itself: it holds what one fold worker would.
    resources = {k.lower() if k in ("CPU", "GPU") else k: v
                 for k, v in fold_resources(tc, use_gpu).items()}
    trainable = tune.with_resources(tune.with_parameters(trial, context=context), resources)
    tune_dir = f"{setup.storage.uri.rstrip('/')}/{setup.name}"  # a folder or a pyarrow URI
    path = f"{tune_dir}/tune"
    if tune.Tuner.can_restore(path):
        print(f"resuming the sweep in {path}")
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True)
    else:
        storage = None
        if study_db:
            storage = optuna.storages.RDBStorage(f"sqlite:///{Path(study_db).resolve()}")
        searcher = OptunaSearch(metric=METRIC, mode="max", study_name=setup.name,
                                storage=storage, points_to_evaluate=points,
                                sampler=optuna.samplers.TPESampler(seed=seed))
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=searcher, num_samples=num_samples,
                max_concurrent_trials=fold_slots(tc, use_gpu),
                # The clock is epochs trained over the trial's folds: a trial is compared
                # with others after the same amount of training, first after one fold's worth.
                scheduler=ASHAScheduler(metric=METRIC, mode="max", time_attr="epochs_done",
                                        max_t=len(folds) * tc.max_epochs,
                                        grace_period=tc.max_epochs)
                if asha else None),
            run_config=tune.RunConfig(name="tune", storage_path=tune_dir, verbose=0),
        )
    with _interrupt_watch() as interrupted:
        results = tuner.fit()
    # A trial's function returned (done) or ASHA stopped it, or it raised: those are finished.
    # Tune ends a run gracefully on Ctrl-C and may then count unfinished trials as terminated,
    # so its own counts are not trusted for this.
    complete = [r for r in results if r.error is None and (r.metrics or {}).get("done")]
    stopped = [r for r in results if r.error is None and not (r.metrics or {}).get("done")]
    finished = len(complete) + results.num_errors + (len(stopped) if asha else 0)
    if interrupted() or finished < num_samples:
        raise SweepInterrupted(
            f"the sweep stopped with {len(complete) + results.num_errors} of {num_samples} "
            f"trials finished; run the same command again to resume it from {path}")
    rows = []
    for r in results:
        params = {k: v for k, v in (r.config or {}).items() if k in space}
        m = r.metrics or {}
        rows.append({"trial_id": m.get("trial_id"), **params,
                     METRIC: m.get(METRIC), "folds_done": m.get("folds_done", 0),
                     "epochs_done": m.get("epochs_done", 0),
                     "error": None if r.error is None else str(r.error)[:500]})
    table = pl.DataFrame(rows).sort("trial_id")
    done = table.filter(pl.col("error").is_null() & (pl.col("folds_done") == len(folds)))
    if done.is_empty():
        raise RuntimeError(f"no trial finished all {len(folds)} folds; see {path}")
    best_row = done.sort([METRIC, "trial_id"], descending=[True, False]).row(0, named=True)
    best = {k: best_row[k] for k in space}
    setup.storage.write_parquet(table, setup.name, TRIALS_FILE)
    setup.storage.write_atomic(json.dumps({
        "best_params": best, "best_val_uf1": best_row[METRIC], "metric": METRIC,
        "objective": "mean best-validation UF1 over the sweep folds (test subjects not read)",
        "sweep_folds": [f.test for f in folds],
        # Subjects whose clips the search trained or validated on. A later LOSO tests each of
        # them too; its figures are strictly untouched by the search only for other subjects
        # (a nested search, one sweep per outer fold, is the strict protocol).
        "search_subjects": sorted({s for f in folds for s in f.train + f.val}),
        "num_samples": num_samples, "asha": asha,
        "study_db": str(study_db) if study_db else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=1, default=str).encode(), setup.name, "sweep.json")
    return best, table

