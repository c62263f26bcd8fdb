"""What goes into training one fold and what comes out, as types.

A ``FoldJob`` is everything one fold needs: the configuration, the split, where each split's
clips are read from, label overrides, and where its records go. ``fit_fold`` (``fold.py``)
turns a job into a ``FoldResult``; the runner (``runner.py``) decides where that happens (this
process, or a Ray Train worker) and stores the result. LOSO folds, search trials, and
cross-dataset transfer runs are all fold jobs.

Records a finished fold leaves under ``record_dir`` (``store_result``), ``fold.json`` last, so
its presence means the fold is done::

    weights.pt         best-validation weights of what trains, and the frozen part's fingerprint
    predictions.json   keys ("subject/clip"), labels, class probabilities of the test clips
    fold.json          the ``FoldRecord``
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..data.folds import FoldSplit
from ..data.shards import CLIP_COLUMNS, SubjectReader
from .config import ExperimentConfig

FOLD_JSON, FOLD_PREDS = "fold.json", "predictions.json"
FOLD_WEIGHTS = "weights.pt"
STATE = "state.pt"  # a fold's latest epoch checkpoint, under ``checkpoint_dir``


@dataclass(frozen=True)
class SplitSource:
    """Where one split's clips come from: some subjects' partitions of a clip or token folder.
    ``unlabelled``: labels are replaced by -1 before they reach training (domain-adaptation
    target clips)."""

    root: str
    subjects: tuple[str, ...]
    unlabelled: bool = False

    def reader(self, columns=CLIP_COLUMNS):
        inner = SubjectReader(self.root, self.subjects, columns)
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
class FoldJob:
    """One fold to train. ``sources`` maps "train" (required), "val", "test" and "target" to
    where their clips are read; without "test" the fold never reads a test subject (a search
    trial) and its record has validation figures only. ``storage`` (a folder or URI) with
    ``record_dir`` and ``checkpoint_dir`` under it: where results and epoch checkpoints go;
    None keeps everything in memory."""

    key: str
    experiment: ExperimentConfig
    class_names: tuple[str, ...]
    split: FoldSplit
    sources: Mapping[str, SplitSource]
    label_counts: tuple[int, ...]
    columns: tuple[str, ...] = CLIP_COLUMNS
    label_override: Mapping[str, int] | None = None
    token_fingerprint: str | None = None
    storage: str | None = None
    record_dir: str = ""
    checkpoint_dir: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def predicts_test(self) -> bool:
        return "test" in self.sources


@dataclass
class Predictions:
    keys: list[str]
    labels: list[int]
    probs: list[list[float]]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Predictions:
        return cls(**json.loads(data))


@dataclass
class FoldRecord:
    """fold.json: how a fold was trained and what it scored. Test fields are None for a fold
    that never reads its test subject."""

    test_subject: str
    val_subjects: list[str]
    train_subjects: list[str]
    epochs_run: int
    best_epoch: int
    best_val_uf1: float
    stopped_early: bool
    history: list[dict]
    seconds: float  # compute time of every attempt together
    device: str
    pretrained: bool
    weights_source: str | None
    cache_trunk: bool
    augmented: bool
    trunk_tokens: str | None
    attempts: list[dict]
    adaptation_clips: bool
    precision: str = "fp32"  # what forward passes ran in (fp32, or bfloat16 autocast)
    test_uf1: float | None = None
    test_uar: float | None = None
    n_test: int = 0
    # where and when it ran (filled by the runner)
    wall_seconds: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    node_id: str | None = None
    node_ip: str | None = None
    resources: dict = field(default_factory=dict)  # what the fold's worker held (Ray)
    timing: dict = field(default_factory=dict)  # setup_s, train_s, finish_s, store_s
    extra: dict = field(default_factory=dict)  # e.g. transfer: source, target, adaptation

    def to_json(self) -> bytes:
        data = asdict(self)
        data.update(data.pop("extra"))
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> FoldRecord:
        raw = json.loads(data)
        known = {f.name for f in fields(cls)}
        extra = {k: v for k, v in raw.items() if k not in known}
        return cls(**{k: v for k, v in raw.items() if k in known and k != "extra"}, extra=extra)


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


def fold_done(storage, record_dir: str) -> bool:
    return storage.exists(record_dir, FOLD_JSON)


def read_result(storage, record_dir: str) -> tuple[FoldRecord, Predictions]:
    return (FoldRecord.from_json(storage.read_bytes(record_dir, FOLD_JSON)),
            Predictions.from_json(storage.read_bytes(record_dir, FOLD_PREDS)))
