"""The same LOSO, in this process, without Ray: a baseline for the Ray overhead benchmark and a
quick way to try a configuration on one machine.

Each fold runs ``fit_fold`` (the function the Ray workers run) on ``LocalSplit`` readers of the
same Parquet shards and writes the same fold records, so ``results.summarise`` reports it the
same way. Folds run one after another; with ``cache_trunk`` the frozen-trunk tokens of a clip are
computed once and shared by every fold (the trunk is the same in all of them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..data.prepare import CLIPS_DIR
from .fold import COLUMNS, fit_fold
from .loso import (
    LosoSetup,
    completed_folds,
    shared_trunk,
    shuffled_labels,
    store_fold,
    train_label_counts,
)
from .trunk import TOKEN_COLUMNS


def _column(table: pa.Table, name: str) -> np.ndarray:
    """A column as numpy; fixed-shape tensor columns (Ray's tensor extension, stored as a list
    with the shape in the field metadata) come back as (rows, *shape)."""
    col = table.column(name).combine_chunks()
    if isinstance(col.type, pa.ExtensionType):  # registered (Ray imported): its storage list
        shape, col = tuple(col.type.shape), col.storage
    else:
        meta = table.schema.field(name).metadata or {}
        shape = meta.get(b"ARROW:extension:metadata")
        if shape is None:
            return col.to_numpy(zero_copy_only=False)
        shape = tuple(json.loads(shape))
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), *shape)


class LocalSplit:
    """The clips of some subjects read from the shards, with the part of Ray Data's
    ``DataIterator.iter_batches`` interface that ``fit_fold`` uses."""

    def __init__(self, shards: str | Path, subjects: tuple[str, ...],
                 root: str | Path | None = None, columns: list[str] = COLUMNS):
        root = Path(root) if root is not None else Path(shards) / CLIPS_DIR
        tables = []
        for s in subjects:
            for f in sorted((root / f"subject={s}").glob("*.parquet")):
                t = pq.read_table(f, columns=[c for c in columns if c != "subject"])
                tables.append(t.append_column("subject", pa.array([s] * t.num_rows)))
        if not tables:
            raise FileNotFoundError(f"no shards for subject(s) {list(subjects)} under {root}")
        table = pa.concat_tables(tables)
        self.columns = {c: _column(table, c) for c in columns}
        self.rows = table.num_rows

    def iter_batches(self, batch_size: int, batch_format: str = "numpy",
                     local_shuffle_buffer_size: int | None = None,
                     local_shuffle_seed: int | None = None):
        order = np.arange(self.rows)
        if local_shuffle_buffer_size:
            order = np.random.default_rng(local_shuffle_seed).permutation(self.rows)
        for i in range(0, self.rows, batch_size):
            idx = order[i:i + batch_size]
            yield {c: v[idx] for c, v in self.columns.items()}


def run_folds_local(setup: LosoSetup, threads: int | None = None) -> list[str]:
    """Train every fold without stored results, one after another in this process."""
    tc = setup.exp.train
    torch.set_num_threads(threads or tc.cpus_per_fold)
    device = torch.device("cuda" if torch.cuda.is_available() and tc.use_gpu is not False
                          else "cpu")
    done = completed_folds(setup)
    tokens: dict = {}
    trained = []
    pending = [s for s in setup.folds if s.test not in done]
    # The trunk tokens come from the shared folder the Ray folds read when one exists for this
    # trunk (then both paths train on the same tokens); otherwise each clip is encoded once in
    # this process (``tokens``), which for a run in one process costs less than a Ray Data pass.
    shared = shared_trunk(setup, device.type == "cuda", 1, compute=False) if pending else {}
    root, columns = (shared["tokens_root"], TOKEN_COLUMNS) if shared else (None, COLUMNS)

    def read(subjects):
        return LocalSplit(setup.shards, subjects, root, columns)

    for split in pending:
        trained.append(split.test)
        sources = {"train": read(split.train), "test": read((split.test,))}
        if split.val:
            sources["val"] = read(split.val)
        override = (shuffled_labels(setup.shards, split, tc.seed) if tc.shuffle_labels
                    else None)
        start = time.perf_counter()
        fold, preds, weights = fit_fold(
            setup.exp, setup.class_names, split.to_dict(), sources, device, override,
            train_label_counts(setup.shards, split, len(setup.class_names)),
            token_cache=tokens if tc.cache_trunk else None,
            token_fingerprint=shared.get("token_fingerprint"))
        fold.update(wall_seconds=round(time.perf_counter() - start, 2), node_id="local",
                    node_ip="local")
        store_fold(setup.storage, setup.name, split.test, fold, json.dumps(preds).encode(),
                   weights)
    return trained
