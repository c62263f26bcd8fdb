"""Leave-one-subject-out on Ray: each fold is a one-worker TorchTrainer, run as a Tune trial.

Folds run concurrently, as many as the cluster's resources allow. Each fold's Train run has a
deterministic name under ``<storage>/<experiment>/train/fold-<subject>``, so running the same
experiment again resumes: folds whose results exist are not retrained, and a fold that was
interrupted continues from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.folds import FoldSplit, fold_datasets, loso_splits, subject_labels
from ..data.prepare import read_prepare_meta
from ..storage import Storage, open_storage
from .config import ExperimentConfig
from .fold import COLUMNS, FOLD_JSON, FOLD_PREDS, FOLD_WEIGHTS, train_fold
from .trunk import TOKEN_COLUMNS, ensure_trunk_tokens

CONTROLLER_POLL_S = "0.2"


class ExperimentMismatch(ValueError):
    """An experiment name that already holds a run made with another configuration."""


def shuffled_labels(shards: str, split: FoldSplit, seed: int) -> dict[str, int]:
    """Control run: training and validation labels permuted among those clips (test untouched)."""
    import pyarrow.parquet as pq

    keys, labels = [], []
    for s in split.train + split.val:
        t = pq.read_table(Path(shards) / "clips" / f"subject={s}", columns=["clip", "label_id"])
        keys += [f"{s}/{c}" for c in t.column("clip").to_pylist()]
        labels += t.column("label_id").to_pylist()
    perm = np.random.default_rng([seed, 7919]).permutation(len(labels))
    return {k: int(labels[i]) for k, i in zip(keys, perm)}


def label_counts(shards: str, subjects, n: int) -> list[int]:
    """Clips per class id over the given subjects' shards."""
    import pyarrow.parquet as pq

    counts = Counter()
    for s in subjects:
        t = pq.read_table(Path(shards) / "clips" / f"subject={s}", columns=["label_id"])
        counts.update(t.column("label_id").to_pylist())
    return [counts.get(i, 0) for i in range(n)]


def train_label_counts(shards: str, split: FoldSplit, n: int) -> list[int]:
    return label_counts(shards, split.train, n)


def fit_fold_trainer(exp: ExperimentConfig, class_names: list[str], split: dict,
                     datasets: dict, label_override: dict | None, label_counts: list[int],
                     run_name: str, train_storage: str, use_gpu: bool,
                     token_fingerprint: str | None = None):
    """One fold on its own one-worker ``TorchTrainer`` (retried from its last checkpoint by
    ``FailureConfig``). Returns (fold record, predictions bytes, weights bytes, wall seconds,
    start time)."""
    import ray
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchTrainer

    tc = exp.train
    resources = {"CPU": tc.cpus_per_fold, **(tc.fold_resources or {})}
    # A worker's next ray.train.report waits until the controller has taken the previous one,
    # and the controller looks once per health-check interval (2 s by default): with a
    # checkpoint every epoch, that held a fold to one epoch per 2 s. Ray Train passes this
    # variable from the process that builds the trainer to its controller; a value the user
    # set is kept.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", CONTROLLER_POLL_S)
    # The preemption watcher (one more actor process per fold) follows nodes that a cloud
    # provider drains; a one-node cluster has no other node to move a fold to.
    if len([n for n in ray.nodes() if n.get("Alive")]) == 1:
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    trainer = TorchTrainer(
        train_fold,
        train_loop_config={
            "experiment": exp.to_dict(), "class_names": class_names, "split": split,
            "label_override": label_override, "train_label_counts": label_counts,
            "adaptation": "target" in datasets, "token_fingerprint": token_fingerprint,
        },
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=train_storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=tc.max_failures),
        ),
        datasets=datasets,
        # One worker per fold: nothing to split. An unsplit dataset is read by the worker
        # itself, where a split one needs a coordinator actor (a process) per dataset.
        dataset_config=ray.train.DataConfig(
            datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
    )
    started, start = time.time(), time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - start
    with result.checkpoint.as_directory() as d:
        fold = json.loads((Path(d) / FOLD_JSON).read_text())
        preds = (Path(d) / FOLD_PREDS).read_bytes()
        weights = (Path(d) / FOLD_WEIGHTS).read_bytes()
    return fold, preds, weights, wall, started


def fold_driver(config: dict) -> None:
    """Tune function trainable: builds and fits one fold's TorchTrainer, then stores its result."""
    import ray.data
    import ray.tune

    exp = ExperimentConfig.from_dict(config["experiment"])
    split = FoldSplit.from_dict(config["split"])
    # One fold's few small reads: per-operator progress bars would only flood the job log.
    ray.data.DataContext.get_current().enable_progress_bars = False
    # With the trunk cache, the folds read the tokens computed once for all of them.
    tokens = config.get("tokens_root")
    data = fold_datasets(config["shards"], split, tokens)
    columns = TOKEN_COLUMNS if tokens else COLUMNS
    datasets = {"train": data.train.select_columns(columns, num_cpus=0),
                "test": data.test.select_columns(columns, num_cpus=0)}
    if data.val is not None:
        datasets["val"] = data.val.select_columns(columns, num_cpus=0)
    override = shuffled_labels(config["shards"], split, exp.train.seed) \
        if exp.train.shuffle_labels else None
    fold, preds, weights, wall, started = fit_fold_trainer(
        exp, config["class_names"], config["split"], datasets, override,
        train_label_counts(config["shards"], split, len(config["class_names"])),
        run_name=f"fold-{split.test}", train_storage=config["train_storage"],
        use_gpu=config["use_gpu"], token_fingerprint=config.get("token_fingerprint"))
    fold.update(wall_seconds=round(wall, 2), started_at=round(started, 3),
                finished_at=round(started + wall, 3))
    store_fold(open_storage(config["storage"]), config["name"], split.test, fold, preds, weights)
    ray.tune.report({"test_subject": split.test, "best_val_uf1": fold["best_val_uf1"],
                     "epochs_run": fold["epochs_run"]})


def store_fold(storage: Storage, name: str, subject: str, fold: dict, preds: bytes,
               weights: bytes) -> None:
    """A finished fold's records; fold.json goes last, so its presence means the fold is done."""
    where = (name, "folds", subject)
    storage.write_atomic(weights, *where, FOLD_WEIGHTS)
    storage.write_atomic(preds, *where, FOLD_PREDS)
    storage.write_atomic(json.dumps(fold, indent=1).encode(), *where, FOLD_JSON)


@dataclass
class LosoSetup:
    name: str
    storage: Storage
    shards: str
    class_names: list[str]
    folds: list[FoldSplit]
    exp: ExperimentConfig
    data_meta: dict = field(default_factory=dict)


def plan_loso(shards: str | Path, exp: ExperimentConfig, storage_path: str | Path,
              name: str | None = None, max_folds: int | None = None) -> LosoSetup:
    shards = str(Path(shards).resolve())
    meta = read_prepare_meta(shards)
    folds = loso_splits(subject_labels(shards), exp.train.val_subjects, exp.train.seed)
    if max_folds:
        folds = folds[:max_folds]
    name = name or f"{meta.get('dataset', 'data')}-{meta.get('protocol', '')}-{exp.hash()}"
    storage = open_storage(storage_path)
    record = {"name": name, "config_hash": exp.hash(), "config": exp.to_dict(),
              "shards": shards, "shards_id": meta.get("shards_id"),
              "folds": [f.test for f in folds],
              # what a model trained here needs at prediction time (mer-ray checkpoint)
              "class_names": meta["class_names"], "preprocess": meta.get("config"),
              **{k: meta.get(k) for k in ("dataset", "protocol", "synthetic")}}
    if storage.exists(name, "experiment.json"):
        old = json.loads(storage.read_bytes(name, "experiment.json"))
        if old["config_hash"] != exp.hash() or old["shards"] != shards:
            raise ExperimentMismatch(
                f"{storage.path(name)} holds a run with config {old['config_hash']} on "
                f"{old['shards']}; this one is {exp.hash()} on {shards}. Use another --name "
                f"or remove that folder.")
        if old.get("shards_id") != meta.get("shards_id"):
            raise ExperimentMismatch(
                f"{storage.path(name)} holds a run on {shards} as it was when aligned from "
                f"other data (shards_id {old.get('shards_id')}, now {meta.get('shards_id')}): "
                f"its finished folds do not belong to these clips. Use another --name or "
                f"remove that folder.")
    else:
        storage.write_atomic(json.dumps(record, indent=1).encode(), name, "experiment.json")
    return LosoSetup(name, storage, shards, meta["class_names"], folds, exp, meta)


def completed_folds(setup: LosoSetup) -> set[str]:
    return {f.test for f in setup.folds
            if setup.storage.exists(setup.name, "folds", f.test, FOLD_JSON)}


def wants_gpu(exp: ExperimentConfig) -> bool:
    """train.use_gpu resolved against the cluster: auto means "when the cluster has GPUs"."""
    import ray

    use_gpu = exp.train.use_gpu
    return use_gpu is True or (use_gpu == "auto" and ray.cluster_resources().get("GPU", 0) > 0)


def fold_slots(exp: ExperimentConfig, use_gpu: bool) -> int:
    """How many folds the cluster can run at once with each fold's resources."""
    import ray

    tc = exp.train
    res = ray.cluster_resources()
    slots = int(res.get("CPU", 1) // tc.cpus_per_fold)
    if use_gpu:
        slots = min(slots, int(res.get("GPU", 0)))
    for key, amount in (tc.fold_resources or {}).items():
        slots = min(slots, int(res.get(key, 0) // amount))
    if tc.max_concurrent_folds:
        slots = min(slots, tc.max_concurrent_folds)
    return max(slots, 1)


def shared_trunk(setup: LosoSetup, use_gpu: bool, slots: int, compute: bool = True) -> dict:
    """With ``train.cache_trunk``: the token folder every fold reads and its trunk fingerprint
    (computed once here, reused by later runs on the same shards and trunk); else, or when
    there are none and ``compute`` is off, nothing."""
    if not setup.exp.train.cache_trunk:
        return {}
    found = ensure_trunk_tokens(setup.shards, setup.exp, len(setup.class_names), use_gpu, slots,
                                compute)
    if found is None:
        return {}
    return {"tokens_root": str(found[0]), "token_fingerprint": found[1]}


def run_folds(setup: LosoSetup) -> list[str]:
    """Train every fold without stored results; returns the subjects trained now."""
    import ray
    import ray.tune

    done = completed_folds(setup)
    pending = [f for f in setup.folds if f.test not in done]
    if not pending:
        return []
    use_gpu = wants_gpu(setup.exp)
    base = {
        "experiment": setup.exp.to_dict(), "class_names": setup.class_names,
        "shards": setup.shards, "storage": setup.storage.uri, "name": setup.name,
        "train_storage": f"{setup.storage.uri.rstrip('/')}/{setup.name}/train",
        "use_gpu": use_gpu,
    }
    slots = fold_slots(setup.exp, use_gpu)
    base.update(shared_trunk(setup, use_gpu, slots))
    splits = [f.to_dict() for f in pending]
    tuner = ray.tune.Tuner(
        # The trial only drives its TorchTrainer: it must not hold a CPU that a fold worker needs.
        ray.tune.with_resources(fold_driver, {"cpu": 0, "memory": 1}),
        param_space={**base, "split": ray.tune.grid_search(splits)},
        # A finished fold's trial process drives the next fold instead of a new process
        # importing Ray Train and torch again (fold_driver keeps no state between folds).
        tune_config=ray.tune.TuneConfig(max_concurrent_trials=slots, reuse_actors=True),
        run_config=ray.tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=f"{setup.storage.uri.rstrip('/')}/{setup.name}/tune",
            verbose=0,
        ),
    )
    results = tuner.fit()
    failed = [r for r in results if r.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} fold(s) failed; first error: {failed[0].error}")
    return [f.test for f in pending]
