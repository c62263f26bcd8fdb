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

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .data.folds import FoldSplit
from .model.config import load_yaml
from .train.config import ExperimentConfig

METRIC = "val_uf1"


class SweepInterrupted(RuntimeError):
    """The search was stopped before every trial finished; its state is saved for a resume."""


TRIALS_FILE = "trials.parquet"


def load_space(path: str | Path) -> dict[str, Any]:
    """Tune search-space domains from the YAML file at ``path``."""
    from ray import tune

    makers = {
        "uniform": lambda s: tune.uniform(float(s["low"]), float(s["high"])),
        "loguniform": lambda s: tune.loguniform(float(s["low"]), float(s["high"])),
        "randint": lambda s: tune.randint(int(s["low"]), int(s["high"])),
        "choice": lambda s: tune.choice(list(s["values"])),
    }
    space = {}
    known = ExperimentConfig().to_dict()
    for key, spec in load_yaml(path).items():
        section, _, name = key.partition(".")
        if section not in known or name not in known[section]:
            raise ValueError(f"{path}: {key!r} is not a config field (section.field, e.g. "
                             f"loss.lambda1)")
        if not isinstance(spec, dict) or spec.get("type") not in makers:
            raise ValueError(f"{path}: {key}: expected {{type: {' | '.join(makers)}, ...}}")
        try:
            space[key] = makers[spec["type"]](spec)
        except KeyError as missing:
            raise ValueError(f"{path}: {key}: {spec['type']} needs {missing}") from None
    if not space:
        raise ValueError(f"{path}: empty search space")
    return space


def trial(params: dict[str, Any], context: dict) -> None:
    """Tune function trainable: validation UF1 of one configuration over the sweep's folds."""
    import torch
    from ray import tune

    from .train.fold import fit_fold
    from .train.local import LocalSplit

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

        def save(_state, _files, metrics):
            best[0] = max(best[0], metrics.get("val_uf1", -1.0))
            tune.report({METRIC: float(np.mean(vals + [best[0]])), "folds_done": i,
                         "epochs_done": epochs_done + int(metrics["epoch"]) + 1})
        return save

    for i, split in enumerate(context["folds"]):
        sources = {"train": LocalSplit(context["shards"], tuple(split["train"]))}
        if split["val"]:
            sources["val"] = LocalSplit(context["shards"], tuple(split["val"]))
        fold, _, _ = fit_fold(exp, context["class_names"], split, sources, device,
                              train_label_counts=context["label_counts"][i], predict_test=False,
                              save=every_epoch(i) if context.get("asha") else None,
                              token_cache=tokens if exp.train.cache_trunk else None)
        vals.append(fold["best_val_uf1"])
        epochs_done += fold["epochs_run"]
        tune.report({METRIC: float(np.mean(vals)), "folds_done": i + 1,
                     "epochs_done": epochs_done, "fold_val_uf1": fold["best_val_uf1"],
                     "epochs_run": fold["epochs_run"]})


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

    from .train.loso import fold_slots, train_label_counts, wants_gpu

    tc = setup.exp.train
    use_gpu = wants_gpu(setup.exp)
    folds = sweep_folds(setup, n_folds)
    context = {
        "experiment": setup.exp.to_dict(), "class_names": setup.class_names,
        "shards": setup.shards, "use_gpu": use_gpu, "asha": asha,
        "folds": [f.to_dict() for f in folds],
        "label_counts": [train_label_counts(setup.shards, f, len(setup.class_names))
                         for f in folds],
    }
    # A trial trains its folds itself: it holds what one fold worker would.
    resources = {"cpu": tc.cpus_per_fold, **({"gpu": 1} if use_gpu else {}),
                 **(tc.fold_resources or {})}
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
                max_concurrent_trials=fold_slots(setup.exp, use_gpu),
                # The clock is epochs trained over the trial's folds: a trial is compared
                # with others after the same amount of training, first after one fold's worth.
                scheduler=ASHAScheduler(metric=METRIC, mode="max", time_attr="epochs_done",
                                        max_t=len(folds) * tc.max_epochs,
                                        grace_period=tc.max_epochs)
                if asha else None),
            run_config=tune.RunConfig(name="tune", storage_path=tune_dir, verbose=0),
        )
    results = tuner.fit()
    finished = results.num_terminated + results.num_errors
    if finished < num_samples:  # stopped (Ctrl-C, SIGTERM): Tune saved its state
        raise SweepInterrupted(
            f"the sweep stopped with {finished} of {num_samples} trials finished; run the same "
            f"command again to resume it from {path}")
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

