"""Leave-one-subject-out: plan the folds of a run, then train those without stored results.

Each fold is a ``FoldJob`` (``job.py``) trained by the fold runner (``runner.py``): on Ray Train
workers, as many at once as the cluster's fold slots allow, or in this process (``local``).
A run lives under ``<storage>/<name>/``: ``experiment.json`` (what it is), ``folds/<subject>/``
(each finished fold's records), ``train/fold-<subject>/state.pt`` (an unfinished fold's last
epoch), ``logs/`` (the workers' output, for local storage), then ``summary.json`` and
``predictions.parquet`` (``results.py``). Running the same run again resumes: finished folds
are kept, unfinished ones continue from their last epoch.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import ExperimentConfig
from ..data.folds import FoldSplit, loso_splits
from ..data.shards import (
    CLIP_COLUMNS,
    TOKEN_COLUMNS,
    check_prepared,
    clip_labels,
    clips_root,
    label_counts,
    subject_labels,
)
from ..records import fold_done
from ..storage import Storage, open_storage
from .job import FoldJob, SplitSource
from .runner import Progress, SlotPool, fold_slots, pending, run_local, wants_gpu
from .trunk import ensure_trunk_tokens, pass_place


class ExperimentMismatch(ValueError):
    """An experiment name that already holds a run made with another configuration."""


def shuffled_labels(shards: str, split: FoldSplit, seed: int) -> dict[str, int]:
    """Control run: training and validation labels permuted among those clips (test untouched)."""
    keys, labels = clip_labels(shards, split.train + split.val)
    perm = np.random.default_rng([seed, 7919]).permutation(len(labels))
    return {k: int(labels[i]) for k, i in zip(keys, perm)}


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
              name: str | None = None, max_folds: int | None = None,
              identity: dict | None = None) -> LosoSetup:
    """The folds of a run and its folder; a folder that holds another run (other configuration,
    other clips, or another ``identity``: e.g. a nested search's space and budget) is
    refused."""
    shards = str(Path(shards).resolve())
    meta = check_prepared(shards, exp.data)
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
              **{k: meta.get(k) for k in ("dataset", "protocol", "synthetic")},
              **({"identity": identity} if identity else {})}
    if storage.exists(name, "experiment.json"):
        old = json.loads(storage.read_bytes(name, "experiment.json"))
        if old["config_hash"] != exp.hash() or old["shards"] != shards:
            raise ExperimentMismatch(
                f"{storage.path(name)} holds a run with config {old['config_hash']} on "
                f"{old['shards']}; this one is {exp.hash()} on {shards}. Use another --name "
                f"or remove that folder.")
        if old.get("identity") != identity:
            raise ExperimentMismatch(
                f"{storage.path(name)} holds a run of another kind or search "
                f"({old.get('identity')}); this one is {identity}. Use another --name or "
                f"remove that folder.")
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
            if fold_done(setup.storage, f"{setup.name}/folds/{f.test}")}


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


def fold_job(setup: LosoSetup, split: FoldSplit, tokens: dict, tracker=None) -> FoldJob:
    """One LOSO fold as a job: its subjects read from the clips, or from the shared tokens."""
    root = tokens.get("tokens_root") or str(clips_root(setup.shards))
    sources = {"train": SplitSource(root, split.train),
               "test": SplitSource(root, (split.test,))}
    if split.val:
        sources["val"] = SplitSource(root, split.val)
    tc = setup.exp.train
    return FoldJob(
        key=split.test, experiment=setup.exp, class_names=tuple(setup.class_names),
        split=split, sources=sources,
        label_counts=tuple(label_counts(setup.shards, split.train, len(setup.class_names))),
        columns=TOKEN_COLUMNS if tokens else CLIP_COLUMNS,
        label_override=shuffled_labels(setup.shards, split, tc.seed) if tc.shuffle_labels
        else None,
        token_fingerprint=tokens.get("token_fingerprint"), storage=setup.storage.uri,
        record_dir=f"{setup.name}/folds/{split.test}",
        checkpoint_dir=f"{setup.name}/train/fold-{split.test}", tracking=tracker)


def log_dir(setup_storage: Storage, name: str) -> str | None:
    """Where the workers' output goes: the run folder's ``logs/`` for local storage."""
    local = setup_storage.local_path(name, "logs")
    return local


def run_folds(setup: LosoSetup, local: bool = False, progress: bool = True,
              tracker=None) -> list[str]:
    """Train every fold without stored results; returns the subjects trained now. ``local``:
    one after another in this process instead of on Ray Train workers (the same folds, the
    same predictions). ``tracker``: a ``tracking.TrackingSpec`` (each fold logs its epochs)."""
    todo = [f for f in setup.folds if f.test not in completed_folds(setup)]
    if not todo:
        return []
    tc = setup.exp.train
    if local:
        # The tokens the Ray folds read are used when they exist for this trunk (then both
        # paths train on the same tokens); otherwise each clip is encoded once in this process.
        tokens = shared_trunk(setup, False, 1, compute=False)
        jobs = [fold_job(setup, f, tokens, tracker) for f in todo]
        bar = Progress(len(jobs), 1, setup.name) if progress else None
        if bar:
            bar.begin(len(setup.folds) - len(todo))
        run_local(jobs, progress=bar)
    else:
        use_gpu = wants_gpu(tc)
        slots = fold_slots(tc, use_gpu)
        logs = log_dir(setup.storage, setup.name)
        ray_dir = f"{setup.storage.uri.rstrip('/')}/{setup.name}/train/ray"
        # The slots start while the driver computes the trunk tokens, unless that pass needs
        # the fold resources the slots would hold (a Ray Data pass).
        early = not tc.cache_trunk or pass_place(setup.shards, setup.exp) == "here"
        with contextlib.ExitStack() as stack:  # leaving it closes the pool's queue
            pool = stack.enter_context(SlotPool(tc, min(slots, len(todo)), ray_dir, logs,
                                                use_gpu)) if early else None
            tokens = shared_trunk(setup, use_gpu, slots)
            jobs = pending([fold_job(setup, f, tokens, tracker) for f in todo])
            if pool is None:
                pool = stack.enter_context(SlotPool(tc, min(slots, len(jobs)), ray_dir, logs,
                                                    use_gpu))
            bar = Progress(len(jobs), pool.slots, setup.name) if progress else None
            if bar:
                bar.begin(len(setup.folds) - len(jobs))
                if logs:
                    print(f"worker output: {logs}/slot-*.log", flush=True)
            pool.submit(jobs)
            pool.wait(bar)
    if progress and bar:
        bar.end()
    return [f.test for f in todo]
