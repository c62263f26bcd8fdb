"""One fold, wherever it runs (this process or a Ray Train worker): resume it from its last
epoch checkpoint, checkpoint every epoch, train it (its method's ``fit``), store its records.

- Every epoch a fold writes its checkpoint to storage (``<run>/train/fold-<key>/state.pt``,
  tensors and plain types only: it is read with ``torch.load(weights_only=True)``). A fold
  started again (a restarted worker, a run submitted again) continues from it; finished folds
  (``fold.json`` present) are never trained again.
- While a ``pause`` file sits beside the checkpoint, the fold waits after committing each
  epoch: a known point at which to stop a worker or a driver (the fault tests use it).
- A job may name a start gate (a folder): while the folder holds an ``allow`` file with a
  number N, only the first N folds that start under it go on; the others wait until the file
  is removed. A known point at which to stop a search between its trials (the interrupted
  search test uses it).
- A process keeps the trunk tokens it computed for one frozen trunk (``token_cache``): folds
  of the same trunk that read clips reuse them.
"""

from __future__ import annotations

import io
import json
import time
import uuid

import torch

from ..config import TRUNK_FIELDS
from ..console import params_text
from ..fitting.job import FoldJob, FoldResult, store_result
from ..provenance import libraries
from ..records import PAUSE, STATE
from ..storage import open_storage
from ..tracking import FoldTracker

_TOKENS: dict[str, dict] = {}  # one trunk's tokens per process: key -> {clip key: tokens}


def trunk_key(job: FoldJob) -> str:
    """What decides a fold's trunk tokens: the trunk's model settings, the seed (a random
    backbone's initialisation), the frame size, the weights' source, and the clips (their
    folders and the shards' content ids)."""
    model = job.experiment.model
    roots = sorted({src.root for src in job.sources.values()})
    return json.dumps([model.method, {k: getattr(model, k) for k in TRUNK_FIELDS},
                       job.experiment.train.seed, job.experiment.data.size, job.backbone.kind,
                       job.backbone.path, job.data_id, roots])


def token_cache(job: FoldJob) -> dict | None:
    """What this process computed for the job's clips (the paper model's trunk tokens, when
    the fold computes its own; another method's per-clip features), for its next fold of the
    same clips. Only the latest key's are kept."""
    exp = job.experiment
    if job.method.uses_backbone and (not exp.train.cache_trunk or job.tokens is not None):
        return None
    key = trunk_key(job)
    if key not in _TOKENS:
        _TOKENS.clear()
        _TOKENS[key] = {}
    return _TOKENS[key]


def load_fold_state(storage, job: FoldJob) -> dict | None:
    """The fold's latest epoch checkpoint, or None."""
    if not job.storage or not storage.exists(job.checkpoint_dir, STATE):
        return None
    blob = storage.read_bytes(job.checkpoint_dir, STATE)
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def _state_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


GATE_ALLOW = "allow"


def pass_gate(gate: tuple[str, str]) -> None:
    """Go on if the gate is open or this is one of the first N folds to reach it; else wait
    until its ``allow`` file is removed."""
    uri, where = gate
    storage = open_storage(uri)
    if not storage.exists(where, GATE_ALLOW):
        return
    allowed = int(storage.read_bytes(where, GATE_ALLOW).decode().strip() or 0)
    storage.write_atomic(b"", where, f"start-{uuid.uuid4().hex}")
    if sum(n.startswith("start-") for n in storage.listdir(where)) <= allowed:
        return
    while storage.exists(where, GATE_ALLOW):
        time.sleep(0.1)


def run_job(job: FoldJob, device, report=None, node: tuple[str, str] = ("local", "local"),
            resources: dict | None = None) -> FoldResult:
    """Train one fold: choose its configuration first when it carries a search, resume from
    its checkpoint if it has one, checkpoint every epoch, and store its records when it
    finishes (when the job names a storage). ``report(job, row, last)``: after every epoch
    (``last``: the fold stops after it)."""
    started, t0 = time.time(), time.perf_counter()
    if job.gate is not None:
        pass_gate(job.gate)
    if job.search is not None:
        job = job.search.choose(job)
    storage = open_storage(job.storage) if job.storage else None
    resume = load_fold_state(storage, job) if storage else None
    tracker = FoldTracker(job.tracking, job.key, job.experiment.to_dict()) \
        if job.tracking else None

    def save(state: dict, row: dict) -> None:
        if storage is not None:
            storage.write_atomic(_state_bytes(state), job.checkpoint_dir, STATE)
            while storage.exists(job.checkpoint_dir, PAUSE):  # held at a committed epoch
                time.sleep(0.1)

    def epoch_done(row: dict, last: bool) -> None:
        if tracker is not None:
            tracker.epoch(row)
        if report is not None:
            report(job, row, last)

    t_fit = time.perf_counter()
    result = job.method.fit(job, device, resume, save, token_cache(job),
                                           every_epoch=epoch_done)
    rec = result.record
    # From the fold's start to its first step: what came before the method's fit, and the
    # fit's own set-up (building the model, reading the splits) = the fit less its training
    # and what followed the last step.
    fit_s = time.perf_counter() - t_fit
    rest = rec.timing.get("train_s", 0.0) + rec.timing.get("finish_s", 0.0)
    rec.timing["setup_s"] = round(t_fit - t0 + max(fit_s - rest, 0.0), 3)
    if tracker is not None:
        tracker.end({"test_uf1": rec.test_uf1, "test_uar": rec.test_uar,
                     "best_val_uf1": rec.best_val_uf1, "best_epoch": rec.best_epoch,
                     "epochs_run": rec.epochs_run})
    rec.wall_seconds = round(time.perf_counter() - t0, 2)
    rec.started_at, rec.finished_at = round(started, 3), round(started + rec.wall_seconds, 3)
    rec.node_id, rec.node_ip = node
    rec.resources = resources or {}
    rec.libraries = libraries()
    rec.threads = torch.get_num_threads()
    if storage is not None and job.predicts_test:
        store_result(storage, job, result)
        storage.delete(job.checkpoint_dir, STATE)  # the fold is done: its records say all
    return result


def fold_summary(record) -> dict:
    """What a progress line says about a finished fold."""
    chosen = record.extra.get("chosen_params") if record.extra else None
    return {"test_uf1": record.test_uf1, "test_uar": record.test_uar,
            "best_val_uf1": record.best_val_uf1, "epochs_run": record.epochs_run,
            "wall_seconds": record.wall_seconds,
            "chosen": params_text(chosen) if chosen else None}
