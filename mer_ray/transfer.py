"""Cross-dataset transfer (Table 5): train on every subject of one dataset, test on another.

One run per (source, target, adaptation) condition; each is a single "fold" trained by the same
``fit_fold`` as LOSO:

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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.folds import draw_validation, shard_subjects, subject_labels
from .data.prepare import read_prepare_meta
from .storage import Storage, open_storage
from .train.config import ExperimentConfig
from .train.loso import label_counts

CONDITIONS = {False: "no_adaptation", True: "adaptation"}


@dataclass
class TransferSetup:
    name: str
    storage: Storage
    source: str  # shard folders
    target: str
    source_meta: dict
    target_meta: dict
    class_names: list[str]
    exp: ExperimentConfig
    val: tuple[str, ...]
    train: tuple[str, ...]
    test: tuple[str, ...]

    def split(self, target_name: str) -> dict:
        return {"test": target_name, "val": list(self.val), "train": list(self.train)}

    @property
    def target_name(self) -> str:
        return f"target:{self.target_meta.get('dataset', 'target')}"


def plan_transfer(source: str | Path, target: str | Path, exp: ExperimentConfig,
                  storage_path: str | Path, name: str | None = None) -> TransferSetup:
    source, target = str(Path(source).resolve()), str(Path(target).resolve())
    sm, tm = read_prepare_meta(source), read_prepare_meta(target)
    if sm["class_names"] != tm["class_names"]:
        raise ValueError(f"{source} and {target} have different classes ({sm['class_names']} vs "
                         f"{tm['class_names']}); transfer needs one label space (use the "
                         f"3-class protocol for both)")
    for key in ("frames", "size"):
        if sm["config"][key] != tm["config"][key]:
            raise ValueError(f"{source} and {target} were prepared with different {key} "
                             f"({sm['config'][key]} vs {tm['config'][key]})")
    labels = subject_labels(source)
    subjects = sorted(labels)
    val = draw_validation(subjects, labels, exp.train.val_subjects,
                          np.random.default_rng([exp.train.seed, 104729]))
    train = tuple(s for s in subjects if s not in val)
    test = tuple(shard_subjects(target))
    name = name or (f"{sm.get('dataset', 'source')}-to-{tm.get('dataset', 'target')}-"
                    f"{exp.hash()}")
    storage = open_storage(storage_path)
    record = {"name": name, "config_hash": exp.hash(), "config": exp.to_dict(),
              "source_shards": source, "target_shards": target,
              "source": sm.get("dataset"), "target": tm.get("dataset"),
              "class_names": sm["class_names"], "preprocess": sm.get("config"),
              "val_subjects": list(val), "train_subjects": list(train),
              "target_subjects": list(test)}
    if storage.exists(name, "experiment.json"):
        old = json.loads(storage.read_bytes(name, "experiment.json"))
        if (old["config_hash"], old["source_shards"], old["target_shards"]) != \
                (exp.hash(), source, target):
            raise ValueError(f"{storage.path(name)} holds another transfer run; use another "
                             f"--name or remove that folder")
    else:
        storage.write_atomic(json.dumps(record, indent=1).encode(), name, "experiment.json")
    return TransferSetup(name, storage, source, target, sm, tm, sm["class_names"], exp, val,
                         train, test)


def _condition_done(setup: TransferSetup, adapt: bool) -> bool:
    from .train.fold import FOLD_JSON

    return setup.storage.exists(setup.name, CONDITIONS[adapt], "folds", setup.target_name,
                                FOLD_JSON)


def withhold_labels(batch: dict) -> dict:
    """A batch of target clips with every label replaced by -1 (adaptation sees no labels)."""
    return {**batch, "label_id": np.full(len(batch["label_id"]), -1, np.int64)}


class Unlabelled:
    """A reader whose batches carry label -1: target clips for adaptation, labels withheld."""

    def __init__(self, inner):
        self.inner = inner

    def iter_batches(self, **kwargs):
        for batch in self.inner.iter_batches(**kwargs):
            yield withhold_labels(batch)


def _store(setup: TransferSetup, adapt: bool, fold: dict, preds: bytes, weights: bytes) -> None:
    from .train.loso import store_fold

    fold.update(source=setup.source_meta.get("dataset"), target=setup.target_meta.get("dataset"),
                adaptation=adapt)
    store_fold(setup.storage, f"{setup.name}/{CONDITIONS[adapt]}", setup.target_name, fold,
               preds, weights)


def run_local(setup: TransferSetup, conditions: list[bool]) -> list[bool]:
    import torch

    from .train.fold import fit_fold
    from .train.local import LocalSplit

    tc = setup.exp.train
    torch.set_num_threads(tc.cpus_per_fold)
    device = torch.device("cuda" if torch.cuda.is_available() and tc.use_gpu is not False
                          else "cpu")
    done = []
    tokens: dict = {}
    for adapt in conditions:
        if _condition_done(setup, adapt):
            continue
        sources = {"train": LocalSplit(setup.source, setup.train),
                   "test": LocalSplit(setup.target, setup.test)}
        if setup.val:
            sources["val"] = LocalSplit(setup.source, setup.val)
        if adapt:
            sources["target"] = Unlabelled(LocalSplit(setup.target, setup.test))
        start = time.perf_counter()
        fold, preds, weights = fit_fold(
            setup.exp, setup.class_names, setup.split(setup.target_name), sources, device,
            train_label_counts=label_counts(setup.source, setup.train, len(setup.class_names)),
            token_cache=tokens if tc.cache_trunk else None)
        fold.update(wall_seconds=round(time.perf_counter() - start, 2), node_id="local",
                    node_ip="local")
        _store(setup, adapt, fold, json.dumps(preds).encode(), weights)
        done.append(adapt)
    return done


def transfer_driver(config: dict) -> None:
    """Tune function trainable for one condition: a one-worker TorchTrainer, like a LOSO fold."""
    import ray.data
    import ray.tune

    from .data.folds import _read_subjects
    from .data.prepare import CLIPS_DIR
    from .train.fold import COLUMNS
    from .train.loso import fit_fold_trainer

    setup = plan_transfer(config["source"], config["target"],
                          ExperimentConfig.from_dict(config["experiment"]), config["storage"],
                          config["name"])
    adapt = config["adapt"]
    ray.data.DataContext.get_current().enable_progress_bars = False
    read = lambda shards, subjects: _read_subjects(  # noqa: E731
        Path(shards) / CLIPS_DIR, tuple(subjects)).select_columns(COLUMNS, num_cpus=0)
    datasets = {"train": read(setup.source, setup.train), "test": read(setup.target, setup.test)}
    if setup.val:
        datasets["val"] = read(setup.source, setup.val)
    if adapt:
        datasets["target"] = read(setup.target, setup.test).map_batches(
            withhold_labels, batch_format="numpy", num_cpus=0)
    split = setup.split(setup.target_name)
    condition = CONDITIONS[adapt]
    fold, preds, weights, wall, started = fit_fold_trainer(
        setup.exp, setup.class_names, split, datasets, None,
        label_counts(setup.source, setup.train, len(setup.class_names)),
        run_name=f"{condition}", train_storage=f"{setup.storage.uri.rstrip('/')}/"
                                                f"{setup.name}/train",
        use_gpu=config["use_gpu"])
    fold.update(wall_seconds=round(wall, 2), started_at=round(started, 3),
                finished_at=round(started + wall, 3))
    _store(setup, adapt, fold, preds, weights)
    ray.tune.report({"adaptation": int(adapt), "best_val_uf1": fold["best_val_uf1"]})


def run_ray(setup: TransferSetup, conditions: list[bool]) -> list[bool]:
    import ray.tune

    from .train.loso import fold_slots, wants_gpu

    todo = [a for a in conditions if not _condition_done(setup, a)]
    if not todo:
        return []
    use_gpu = wants_gpu(setup.exp)
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(transfer_driver, {"cpu": 0, "memory": 1}),
        param_space={"source": setup.source, "target": setup.target,
                     "experiment": setup.exp.to_dict(), "storage": setup.storage.uri,
                     "name": setup.name, "use_gpu": use_gpu,
                     "adapt": ray.tune.grid_search(todo)},
        tune_config=ray.tune.TuneConfig(max_concurrent_trials=fold_slots(setup.exp, use_gpu)),
        run_config=ray.tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=f"{setup.storage.uri.rstrip('/')}/{setup.name}/tune", verbose=0),
    )
    failed = [r for r in tuner.fit() if r.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} transfer run(s) failed; first: {failed[0].error}")
    return todo


def summarise(setup: TransferSetup, adapt: bool, extra: dict | None = None) -> dict:
    """One condition's summary.json and predictions.parquet, in the LOSO summary's shape."""
    from .data.folds import FoldSplit
    from .train.loso import LosoSetup
    from .train.results import summarise as loso_summarise

    # the single "fold" whose test set is the whole target dataset
    one = FoldSplit(setup.target_name, setup.val, setup.train)
    view = LosoSetup(f"{setup.name}/{CONDITIONS[adapt]}", setup.storage, setup.target,
                     setup.class_names, [one], setup.exp,
                     {**setup.target_meta,
                      "synthetic": bool(setup.source_meta.get("synthetic"))
                      or bool(setup.target_meta.get("synthetic"))})
    return loso_summarise(view, {
        "transfer": {"source": setup.source_meta.get("dataset"),
                     "target": setup.target_meta.get("dataset"), "adaptation": adapt,
                     "adaptation_data": ("target clips without labels, in the consistency "
                                         "term only" if adapt else None),
                     "source_shards": setup.source, "target_shards": setup.target,
                     "val_subjects": list(setup.val), "train_subjects": list(setup.train),
                     "target_subjects": list(setup.test)},
        **(extra or {})})
