"""What goes into training one fold and what comes out, as types.

A ``FoldJob`` is everything one fold needs: the configuration, the split, where each split's
clips (or shared trunk tokens) are read from, where the backbone's weights come from, label
overrides, and where its records go. Every experiment turns itself into fold jobs in one module
(``train/jobs.py``); ``train/runner.py`` runs them; the job's method (``job.method.fit``) turns
one job into a ``FoldResult``.

A finished fold's records go under ``record_dir`` (``store_result``; the layout is in
``records.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import ExperimentConfig
from ..data.folds import FoldSplit
from ..data.shards import CLIP_COLUMNS, TOKEN_COLUMNS, SubjectReader
from ..model.encoder import BackboneSource
from ..records import FOLD_JSON, FOLD_PREDS, FOLD_WEIGHTS, FoldRecord, Predictions


@dataclass(frozen=True)
class SplitSource:
    """Where one split's clips come from: some subjects' partitions of a clip or token folder.
    ``unlabelled``: labels are replaced by -1 before they reach training (domain-adaptation
    target clips). ``made_from``: the ``shards_id`` of the shards the run was planned on; the
    folder must still hold what was made from them when the fold reads it."""

    root: str
    subjects: tuple[str, ...]
    unlabelled: bool = False
    made_from: str = ""

    def reader(self, columns=CLIP_COLUMNS):
        inner = SubjectReader(self.root, self.subjects, columns, made_from=self.made_from)
        return Unlabelled(inner) if self.unlabelled else inner


class Unlabelled:
    """A reader whose batches carry label -1: target clips for adaptation, labels withheld."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def iter_batches(self, **kwargs):
        import numpy as np

        for batch in self.inner.iter_batches(**kwargs):
            yield {**batch, "label_id": np.full(len(batch["label_id"]), -1, np.int64)}


@dataclass(frozen=True)
class TokenSource:
    """A folder of frozen-trunk tokens shared by the folds of a run (``trunk.py``), and what a
    fold must find true of it before reading: the trunk's fingerprint and the cached views'
    id. ``made_with``: the driver's side (weights source, pretrained, library versions), named
    in the message when a fold's own trunk differs."""

    root: str
    fingerprint: str
    views_id: str | None
    made_with: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FoldJob:
    """One fold to train. ``sources`` maps "train" (required), "val", "test" and "target" to
    where their clips are read; without "test" the fold never reads a test subject (a search
    trial) and its record has validation figures only. ``backbone``: where the weights come
    from, decided once by the driver. ``tokens``: the shared trunk tokens the sources point
    into (None: the sources are clip folders). ``storage`` (a folder or URI) with
    ``record_dir`` and ``checkpoint_dir`` under it: where results and epoch checkpoints go;
    None keeps everything in memory. ``search``: run where the fold runs, before it trains,
    to choose its configuration (``search.choose(job)`` returns the job to train: a nested
    search's outer fold)."""

    key: str
    experiment: ExperimentConfig
    class_names: tuple[str, ...]
    split: FoldSplit
    sources: Mapping[str, SplitSource]
    label_counts: tuple[int, ...]
    backbone: BackboneSource
    tokens: TokenSource | None = None
    label_override: Mapping[str, int] | None = None
    storage: str | None = None
    record_dir: str = ""
    checkpoint_dir: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    tracking: Any = None  # a tracking.TrackingSpec: where its epochs are logged, or None
    search: Any = None
    gate: tuple[str, str] | None = None  # (storage, folder): a start gate (train/attempt.py)
    data_id: str = ""  # what the clips are (the shards' content ids): keys cached tokens
    reads: tuple[str, ...] | None = None  # the method's shard columns (None: clips or tokens)
    method: Any = None  # the ``methods.Method`` that fits it, resolved once by the planner
    # a multi-label protocol (CD6ME): labels are AU masks; decided once, by the planner; then
    # ``label_counts`` holds each AU's positives among the ``train_clips`` training clips
    multilabel: bool = False
    train_clips: int | None = None

    @property
    def task(self):
        """What the fold trains for (``fitting/task.py``): classes, or action units."""
        from .task import Task

        return Task(tuple(self.class_names), self.multilabel)

    @property
    def predicts_test(self) -> bool:
        return "test" in self.sources

    @property
    def columns(self) -> tuple[str, ...]:
        if self.reads is not None:
            return self.reads
        return TOKEN_COLUMNS if self.tokens is not None else CLIP_COLUMNS


@dataclass
class FoldResult:
    key: str
    record: FoldRecord
    predictions: Predictions | None
    weights: bytes  # ``FOLD_WEIGHTS`` contents; b"" for a fold that never predicts


def store_result(storage, job: FoldJob, result: FoldResult) -> None:
    """A finished fold's records under ``job.record_dir``; fold.json goes last, so its presence
    means the fold is done."""
    storage.write_atomic(result.weights, job.record_dir, FOLD_WEIGHTS)
    storage.write_atomic(result.predictions.to_json(), job.record_dir, FOLD_PREDS)
    storage.write_atomic(result.record.to_json(), job.record_dir, FOLD_JSON)
