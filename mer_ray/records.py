"""The records a finished fold leaves in its run folder, and reading them back.

A run folder (``<storage>/<run>/``) holds ``experiment.json`` (what the run is), then per fold
``folds/<id>/`` with, ``fold.json`` written last so its presence means the fold is done::

    weights.pt         best-validation weights of what trains, and the frozen part's fingerprint
    predictions.json   keys ("subject/clip"), labels, class probabilities of the test clips
    fold.json          the ``FoldRecord``

and, while a fold is unfinished, ``train/fold-<id>/state.pt`` (its last epoch), then
``summary.json`` and ``predictions.parquet``. Training writes these; ``mer-ray checkpoint``,
the summaries and the report read them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

FOLD_JSON, FOLD_PREDS = "fold.json", "predictions.json"
FOLD_WEIGHTS = "weights.pt"
STATE = "state.pt"  # a fold's latest epoch checkpoint, under its checkpoint folder
# While this file exists beside it, a fold waits after committing each epoch checkpoint: a
# known point at which to stop a worker or driver (the fault tests use it).
PAUSE = "pause"
EXPERIMENT_JSON = "experiment.json"


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
    method: str = "mer"  # the method trained (model.method)
    selection: str = "validation"  # what picked the epoch: validation, or test (LEAKY)
    # the fold's figures; under a multi-label protocol (CD6ME) test_uf1 and best_val_uf1 hold
    # the mean AU F1 (the selection figure) and test_uar is None
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
    threads: int | None = None  # torch threads the fold trained with
    libraries: dict = field(default_factory=dict)  # library versions of the fold's process
    weights_sha256: str | None = None  # of the backbone weights file, when there is one
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


def fold_done(storage, record_dir: str) -> bool:
    return storage.exists(record_dir, FOLD_JSON)


def read_result(storage, record_dir: str) -> tuple[FoldRecord, Predictions]:
    return (FoldRecord.from_json(storage.read_bytes(record_dir, FOLD_JSON)),
            Predictions.from_json(storage.read_bytes(record_dir, FOLD_PREDS)))
