"""The shard layout, in one place: where aligned clips and derived tokens live, their columns,
and the readers every consumer uses.

::

    SHARDS/prepare.json                        settings, class names, counts, ``shards_id``
    SHARDS/manifest.parquet, rejected.parquet  what was aligned, and what was not (and why)
    SHARDS/clips/subject=<id>/*.parquet        one row per clip: CLIP_COLUMNS + metadata
    SHARDS/trunk/<fingerprint>/subject=<id>/   frozen-trunk tokens (``train/trunk.py``):
                                               TOKEN_COLUMNS
    SHARDS/trunk/<fingerprint>/tokens.json     what made the tokens (written last)

Every folder of clips or tokens is partitioned by subject (Hive style): a reader names the
subjects it wants and never opens another subject's files, which is what keeps a fold's test
subject out of its training and validation data (``folds.py``).

Folds read their subjects' partitions with pyarrow directly (``SubjectReader``): one fold's
clips are a few MB to a few hundred MB, and a Ray Data execution per split cost seconds per fold
(measured: a two-file read took 13 s on a loaded 2-core machine). Ray Data does the passes over
whole folders: alignment (``prepare.py``) and the trunk tokens (``train/trunk.py``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

CLIPS_DIR = "clips"
TRUNK_DIR = "trunk"
PREPARE_JSON = "prepare.json"
CLIP_COLUMNS = ("subject", "clip", "label_id", "frames")
TOKEN_COLUMNS = ("subject", "clip", "label_id", "tokens")


def clips_root(shards: str | Path) -> Path:
    return Path(shards) / CLIPS_DIR


def subject_dir(root: str | Path, subject: str) -> Path:
    """One subject's partition of a clip or token folder."""
    return Path(root) / f"subject={subject}"


def read_prepare_meta(shards: str | Path) -> dict:
    path = Path(shards) / PREPARE_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a shard folder; create one with 'mer-ray prepare'")
    return json.loads(path.read_text())


def check_prepared(shards: str | Path, data) -> dict:
    """prepare.json of shards a run is about to train on; shards prepared with another T, S or
    alignment geometry than ``data`` (a ``config.DataConfig``) are refused."""
    meta = read_prepare_meta(shards)
    made = meta.get("config", {})
    geometry = made.get("geometry", {})
    have = (made.get("frames"), made.get("size"), geometry.get("eye_y"),
            geometry.get("inter_ocular"))
    want = (data.frames, data.size, data.eye_y, data.inter_ocular)
    if have != want:
        raise ValueError(
            f"{shards}: prepared with T={have[0]}, S={have[1]}, eye_y={have[2]}, "
            f"inter_ocular={have[3]}; this run's data section says T={want[0]}, S={want[1]}, "
            f"eye_y={want[2]}, inter_ocular={want[3]}. Set data.frames / data.size (--frames / "
            f"--size) to the shards', or prepare shards for these settings.")
    return meta


def shard_subjects(shards: str | Path) -> list[str]:
    """Subjects present in a shard folder (its ``clips/subject=...`` partitions)."""
    root = clips_root(shards)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no shards here; create them with 'mer-ray prepare'")
    return sorted(p.name.split("=", 1)[1] for p in root.iterdir()
                  if p.is_dir() and p.name.startswith("subject="))


def _read_labels(shards: str | Path, subject: str) -> list[int]:
    import pyarrow.parquet as pq

    return pq.read_table(subject_dir(clips_root(shards), subject),
                         columns=["label_id"]).column("label_id").to_pylist()


def subject_labels(shards: str | Path) -> dict[str, set[int]]:
    """label_ids per subject, read from the shard files' label column only."""
    return {s: set(_read_labels(shards, s)) for s in shard_subjects(shards)}


def label_counts(shards: str | Path, subjects: Iterable[str], n: int) -> list[int]:
    """Clips per class id over the given subjects' shards."""
    counts = Counter()
    for s in subjects:
        counts.update(_read_labels(shards, s))
    return [counts.get(i, 0) for i in range(n)]


def clip_labels(shards: str | Path, subjects: Iterable[str]) -> tuple[list[str], list[int]]:
    """("subject/clip" keys, label ids) of the given subjects' clips, in shard order."""
    import pyarrow.parquet as pq

    keys, labels = [], []
    for s in subjects:
        t = pq.read_table(subject_dir(clips_root(shards), s), columns=["clip", "label_id"])
        keys += [f"{s}/{c}" for c in t.column("clip").to_pylist()]
        labels += t.column("label_id").to_pylist()
    return keys, labels


def _column(table, name: str) -> np.ndarray:
    """A column as numpy; fixed-shape tensor columns (Ray's tensor extension, stored as a list
    with the shape in the field metadata) come back as (rows, *shape)."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    if isinstance(col.type, pa.BaseExtensionType):  # Ray's or Arrow's tensor type
        shape, col = tuple(col.type.shape), col.storage
    else:
        meta = table.schema.field(name).metadata or {}
        shape = meta.get(b"ARROW:extension:metadata")
        if shape is None:
            return col.to_numpy(zero_copy_only=False)
        shape = tuple(json.loads(shape))
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), *shape)


def clip_keys(batch: dict) -> list[str]:
    """``subject/clip`` of each row of a batch: how a clip is named across splits and caches."""
    return [f"{s}/{c}" for s, c in zip(batch["subject"], batch["clip"])]


class SubjectReader:
    """The clips (or tokens) of some subjects, read from their partitions into memory, with the
    part of Ray Data's ``iter_batches`` interface the training loop uses. Rows keep the order
    of ``subjects`` and, within a subject, the files' order."""

    def __init__(self, root: str | Path, subjects: Iterable[str],
                 columns: Iterable[str] = CLIP_COLUMNS):
        import pyarrow as pa
        import pyarrow.parquet as pq

        root, subjects, columns = Path(root), tuple(subjects), tuple(columns)
        tables = []
        for s in subjects:
            files = sorted(subject_dir(root, s).glob("*.parquet"))
            for f in files:
                t = pq.read_table(f, columns=[c for c in columns if c != "subject"])
                tables.append(t.append_column("subject", pa.array([s] * t.num_rows)))
        if not tables:
            raise FileNotFoundError(f"no shards for subject(s) {list(subjects)} under {root}")
        table = pa.concat_tables(tables)
        self.columns = {c: _column(table, c) for c in columns}
        self.rows = table.num_rows

    def __len__(self) -> int:
        return self.rows

    def iter_batches(self, batch_size: int, batch_format: str = "numpy",
                     local_shuffle_buffer_size: int | None = None,
                     local_shuffle_seed: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        order = np.arange(self.rows)
        if local_shuffle_buffer_size:
            order = np.random.default_rng(local_shuffle_seed).permutation(self.rows)
        for i in range(0, self.rows, batch_size):
            idx = order[i:i + batch_size]
            yield {c: v[idx] for c, v in self.columns.items()}


def ray_dataset(root: str | Path, subjects: Iterable[str]):
    """The ``subject=...`` partitions of ``root`` for these subjects, as a Ray Dataset (for
    passes over whole folders, e.g. the trunk tokens)."""
    import ray.data
    from ray.data.datasource import Partitioning

    root = Path(root)
    paths = [str(subject_dir(root, s)) for s in subjects]
    missing = [p for p in paths if not Path(p).is_dir()]
    if missing:
        raise FileNotFoundError(f"no shards for subject(s) {missing} under {root}")
    # Reads request no CPU: a fold worker may hold every CPU while this runs. Ray 2.60's second
    # read path adds a file-listing step that always asks for one CPU, so the first path is
    # used here (the dataset keeps the context it was built with).
    ctx = ray.data.DataContext.get_current()
    previous, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        return ray.data.read_parquet(paths, partitioning=Partitioning("hive", base_dir=str(root)),
                                     num_cpus=0)
    finally:
        ctx.use_datasource_v2 = previous
