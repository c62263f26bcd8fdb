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

The outer predictions make the reported UF1/UAR. Outer folds run concurrently as Ray Tune
trials (one per outer fold, each holding one fold's resources and training its folds in its own
process with the fold runner), on the shared trunk tokens.

A run lives under ``<storage>/<name>/`` like a LOSO run (``folds/<o>/`` holds each outer fold's
records) plus ``search/<o>.json`` (the chosen configuration, every trial and the subjects the
search trained or validated on) and ``search/<o>/t<k>-<inner>.json`` (each inner evaluation:
a restarted outer fold reuses them and asks Optuna the same questions again, so it resumes where
it stopped).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ExperimentConfig
from ..data.folds import FoldSplit, loso_splits
from ..data.shards import CLIP_COLUMNS, TOKEN_COLUMNS, clips_root, label_counts, subject_labels
from ..records import fold_done
from ..storage import open_storage
from ..train.job import FoldJob, SplitSource

# Settings that change the frozen trunk: searching one of them means the shared tokens of the
# base configuration do not fit every trial, so trials read the clips instead.
TRUNK_FIELDS = {"model.backbone", "model.image_size", "model.pretrained",
                "model.backbone_weights", "model.random_init_layerscale", "model.finetune",
                "model.lora_blocks", "train.seed"}


@dataclass
class NestedPlan:
    setup: Any  # the LosoSetup of the outer folds
    space: dict[str, dict]
    trials: int
    inner_folds: int

    def identity(self) -> dict:
        return {"space": self.space, "trials": self.trials, "inner_folds": self.inner_folds}


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


def outer_fold(config: dict, context: dict) -> None:
    """Tune function trainable: one outer fold's search, then its outer model and prediction.
    ``config["outer"]``: the outer test subject; ``context``: what every outer fold shares."""
    import optuna
    import torch
    from ray import tune

    from ..train.runner import run_job, trunk_cache_key
    from .sweep import optuna_space

    ctx = context
    outer: FoldSplit = ctx["outer_splits"][config["outer"]]
    base = ExperimentConfig.from_dict(ctx["experiment"])
    storage = open_storage(ctx["storage"])
    name, o = ctx["name"], outer.test
    torch.set_num_threads(base.train.cpus_per_fold)
    device = torch.device("cuda" if ctx["use_gpu"] and torch.cuda.is_available() else "cpu")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = optuna_space(ctx["space"])
    inner = inner_splits(ctx["labels"], o, base.train.val_subjects, base.train.seed,
                         ctx["inner_folds"])
    tokens = ctx["tokens"]
    root = tokens.get("tokens_root") or str(clips_root(ctx["shards"]))
    caches: dict[str, dict] = {}

    def job_for(exp: ExperimentConfig, split: FoldSplit, **kw) -> FoldJob:
        sources = {"train": SplitSource(root, split.train), "val": SplitSource(root, split.val)}
        if kw.pop("test", False):
            sources["test"] = SplitSource(root, (split.test,))
        return FoldJob(key=kw.pop("key"), experiment=exp,
                       class_names=tuple(ctx["class_names"]), split=split, sources=sources,
                       label_counts=tuple(label_counts(ctx["shards"], split.train,
                                                       len(ctx["class_names"]))),
                       columns=TOKEN_COLUMNS if tokens else CLIP_COLUMNS,
                       token_fingerprint=tokens.get("token_fingerprint"), **kw)

    def run(job: FoldJob):
        cache = caches.setdefault(trunk_cache_key(job), {}) \
            if job.experiment.train.cache_trunk and not tokens else None
        return run_job(job, device, cache)

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=_seed(base.train.seed,
                                                                               o)))
    rows = []
    for t in range(ctx["trials"]):
        trial = study.ask(space)
        params = dict(trial.params)
        exp = base.with_values(params)
        vals = []
        for split in inner:
            where = f"{name}/search/{o}/t{t:03d}-{split.test}.json"
            if storage.exists(where):  # evaluated before this outer fold was restarted
                done = json.loads(storage.read_bytes(where))
                if done["params"] != params:
                    raise RuntimeError(f"{storage.path(where)}: stored for other parameters "
                                       f"({done['params']}, asked {params}); remove "
                                       f"{storage.path(name, 'search', o)} to search again")
                vals.append(done["best_val_uf1"])
                continue
            rec = run(job_for(exp, split, key=f"{o}:{t}:{split.test}")).record
            storage.write_atomic(json.dumps({
                "params": params, "inner_fold": split.to_dict(),
                "best_val_uf1": rec.best_val_uf1, "epochs_run": rec.epochs_run}).encode(),
                where)
            vals.append(rec.best_val_uf1)
        value = float(np.mean(vals))
        study.tell(trial, value)
        rows.append({"trial": t, "params": params, "val_uf1": value,
                     "inner_val_uf1": [float(v) for v in vals]})
        tune.report({"trials_done": t + 1, "best_val_uf1": max(r["val_uf1"] for r in rows)})
    best = max(rows, key=lambda r: (r["val_uf1"], -r["trial"]))
    chosen = base.with_values(best["params"])
    seen = sorted({s for f in inner for s in f.train + f.val})
    assert o not in seen  # the outer subject never takes part in its own search
    final = job_for(chosen, outer, key=o, test=True, storage=ctx["storage"],
                    record_dir=f"{name}/folds/{o}", checkpoint_dir=f"{name}/train/fold-{o}",
                    extra={"chosen_params": best["params"]})
    if not fold_done(storage, final.record_dir):
        run(final)
    storage.write_atomic(json.dumps({
        "outer_subject": o, "chosen_params": best["params"],
        "chosen_trial": best["trial"], "best_val_uf1": best["val_uf1"],
        "objective": "mean best-validation UF1 over the inner folds",
        "inner_folds": [f.to_dict() for f in inner], "search_subjects": seen,
        "outer_split": outer.to_dict(), "trials": rows,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=1).encode(), name, "search", f"{o}.json")
    tune.report({"trials_done": ctx["trials"], "best_val_uf1": best["val_uf1"]})


def plan_nested(shards: str | Path, exp: ExperimentConfig, storage_path: str, name: str | None,
                space: dict[str, dict], trials: int, inner_folds: int,
                max_folds: int | None = None) -> NestedPlan:
    from ..data.shards import read_prepare_meta
    from ..train.loso import plan_loso

    meta = read_prepare_meta(shards)
    name = name or f"nested-{meta.get('dataset', 'data')}-{meta.get('protocol', '')}-" \
                   f"{exp.hash()}"
    plan = NestedPlan(None, space, trials, inner_folds)
    plan.setup = plan_loso(shards, exp, storage_path, name, max_folds,
                           identity={"nested_search": plan.identity()})
    return plan


def run_nested(plan: NestedPlan, progress: bool = True) -> list[str]:
    """Every outer fold without stored results: its search and its outer model, outer folds
    concurrently as Tune trials. Returns the outer subjects trained now."""
    import ray.tune

    from ..train.loso import completed_folds, shared_trunk
    from ..train.runner import fold_resources, fold_slots, wants_gpu

    setup = plan.setup
    tc = setup.exp.train
    todo = [f for f in setup.folds if f.test not in completed_folds(setup)
            or not setup.storage.exists(setup.name, "search", f"{f.test}.json")]
    if not todo:
        return []
    use_gpu = wants_gpu(tc)
    slots = fold_slots(tc, use_gpu)
    tokens = {} if TRUNK_FIELDS & set(plan.space) else shared_trunk(setup, use_gpu, slots)
    context = {
        "experiment": setup.exp.to_dict(), "class_names": setup.class_names,
        "shards": setup.shards, "storage": setup.storage.uri, "name": setup.name,
        "space": plan.space, "trials": plan.trials, "inner_folds": plan.inner_folds,
        "labels": subject_labels(setup.shards), "tokens": tokens, "use_gpu": use_gpu,
        "outer_splits": {f.test: f for f in todo},
    }
    resources = {k.lower() if k in ("CPU", "GPU") else k: v
                 for k, v in fold_resources(tc, use_gpu).items()}
    if progress:
        print(f"{setup.name}: {len(todo)} outer fold(s), each searching {plan.trials} "
              f"configuration(s) on {plan.inner_folds} inner fold(s), {min(slots, len(todo))} "
              f"at a time", flush=True)
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(ray.tune.with_parameters(outer_fold, context=context),
                                resources),
        param_space={"outer": ray.tune.grid_search([f.test for f in todo])},
        tune_config=ray.tune.TuneConfig(max_concurrent_trials=slots),
        run_config=ray.tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=f"{setup.storage.uri.rstrip('/')}/{setup.name}/tune", verbose=0),
    )
    from .sweep import SweepInterrupted, _interrupt_watch

    with _interrupt_watch() as interrupted:
        results = tuner.fit()
    if interrupted():  # Tune ended the run gracefully: finished outer folds are stored
        raise SweepInterrupted("the nested search was stopped; run the same command again to "
                               "resume it (finished outer folds and inner evaluations are "
                               "kept)")
    failed = [r for r in results if r.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} outer fold(s) failed; first error: {failed[0].error}")
    if progress:
        for f in todo:
            rec = json.loads(setup.storage.read_bytes(setup.name, "search", f"{f.test}.json"))
            print(f"outer fold {f.test}: chose {_params(rec['chosen_params'])} (inner "
                  f"validation UF1 {rec['best_val_uf1']:.3f})", flush=True)
    return [f.test for f in todo]


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def nested_record(plan: NestedPlan) -> dict:
    """What the summary says about the search: per outer fold, its chosen configuration and
    the subjects its search saw."""
    setup = plan.setup
    outer = {}
    for f in setup.folds:
        rec = json.loads(setup.storage.read_bytes(setup.name, "search", f"{f.test}.json"))
        outer[f.test] = {k: rec[k] for k in ("chosen_params", "chosen_trial", "best_val_uf1",
                                              "search_subjects")}
    return {"protocol": "nested LOSO: one search per outer test subject, on the other "
                        "subjects only; outer predictions make the reported figures",
            **plan.identity(), "outer_folds": outer}
