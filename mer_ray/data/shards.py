"""The shard layout, in one place: where aligned clips and derived tokens live, their columns,
and the readers every consumer uses.

::

    SHARDS/prepare.json                        settings, class names, counts, ``shards_id``
    SHARDS/manifest.parquet, rejected.parquet  what was aligned, and what was not (and why)
    SHARDS/clips/subject=<id>/*.parquet        one row per clip: CLIP_COLUMNS + metadata, and
                                               the shards_id (SHARDS_ID_COLUMN)
    SHARDS/trunk/<fingerprint>/subject=<id>/   frozen-trunk tokens (``methods/mer/tokens.py``):
                                               TOKEN_COLUMNS
    SHARDS/trunk/<fingerprint>/tokens.json     what made the tokens (written last)
    SHARDS/trunk/<fingerprint>-<views id>/     the same plus VIEWS_COLUMN: the tokens of
                                               augmented views of each clip

Every folder of clips or tokens is partitioned by subject (Hive style): a reader names the
subjects it wants and never opens another subject's files, which is what keeps a fold's test
subject out of its training and validation data (``folds.py``).

Folds read their subjects' partitions with pyarrow directly (``SubjectReader``): one fold's
clips are a few MB to a few hundred MB, and a Ray Data execution per split cost seconds per fold
(measured: a two-file read took 13 s on a loaded 2-core machine). Ray Data does the passes over
whole folders: alignment (``prepare.py``) and the trunk tokens (``methods/mer/tokens.py``).

A shard folder is a local (or mounted) folder or an object-store URI (``s3://bucket/shards``):
every reader and writer here goes through a pyarrow file system (``storage.locate``), so the
same code reads either. ``prepare.json`` is written last and is what makes a folder a shard
folder: a prepare killed half-way leaves clips that no reader takes for shards.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..storage import locate

CLIPS_DIR = "clips"
TRUNK_DIR = "trunk"
PREPARE_JSON = "prepare.json"
TOKENS_MARKER = "tokens.json"  # a token folder's record of what made it (methods/mer/tokens.py)
CLIP_COLUMNS = ("subject", "clip", "label_id", "frames")
TOKEN_COLUMNS = ("subject", "clip", "label_id", "tokens")
# Each clip row's shards_id: a fold checks that what it reads was made from the shards its run
# was planned on, in the files it reads anyway (shards from before it: prepare.json says it)
SHARDS_ID_COLUMN = "shards_id"
VIEWS_COLUMN = "views"  # token folders with cached augmented views: (V-1, T, L, D) per clip


def clips_root(shards: str | Path) -> str:
    """A shard folder's clips (a path, or a URI: ``Path`` would make ``s3://`` ``s3:/``)."""
    return locate(shards).where(CLIPS_DIR)


def subject_dir(root: str | Path, subject: str) -> str:
    """One subject's partition of a clip or token folder."""
    return locate(root).where(f"subject={subject}")


@dataclass(frozen=True)
class ShardMeta:
    """``prepare.json``: how a shard folder was made and what it holds."""

    class_names: tuple[str, ...]
    config: dict  # the PrepareConfig as written: frames, size, geometry, ...
    shards_id: str | None = None  # a hash of the manifest rows and the settings
    clips: int = 0
    per_class: dict = field(default_factory=dict)
    rejected: int = 0
    dataset: str | None = None
    protocol: str | None = None
    synthetic: bool = False
    root: str | None = None  # the data root the clips were read from
    annotations: str | None = None  # the annotation file named with --annotations
    annotation_files: list = field(default_factory=list)
    code_version: str | None = None
    seconds: float | None = None

    @property
    def data(self):
        """The frame settings (T, S, alignment geometry) as a ``config.DataConfig``."""
        from ..config import DataConfig

        geometry = self.config.get("geometry", {})
        return DataConfig(frames=self.config["frames"], size=self.config["size"],
                          eye_y=geometry.get("eye_y", DataConfig.eye_y),
                          inter_ocular=geometry.get("inter_ocular", DataConfig.inter_ocular),
                          flow=self.config.get("flow"),
                          # flow shards made before registration was a setting: "separate"
                          registration=self.config.get(
                              "registration",
                              "separate" if self.config.get("flow") else
                              DataConfig.registration))

    def to_dict(self) -> dict:
        return {**asdict(self), "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, raw: dict) -> ShardMeta:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in raw.items() if k in known}
        return cls(**{**data, "class_names": tuple(raw["class_names"])})


def is_shard_folder(path: str | Path) -> bool:
    return locate(path).exists(PREPARE_JSON)


def read_prepare_meta(shards: str | Path) -> ShardMeta:
    """The shard folder's ``prepare.json``; a folder without one is not a shard folder."""
    store = locate(shards)
    path = store.where(PREPARE_JSON)
    if not store.exists(PREPARE_JSON):
        raise FileNotFoundError(f"{path}: not a shard folder; create one with 'mer-ray prepare'")
    try:
        return ShardMeta.from_dict(json.loads(store.read_bytes(PREPARE_JSON)))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a prepare.json mer-ray can read ({exc}); prepare the "
                         f"shards again with 'mer-ray prepare --overwrite'") from None


def write_prepare_meta(shards: str | Path, meta: ShardMeta) -> None:
    """The marker that makes a folder shards: written whole (``Storage.write_atomic``), last."""
    locate(shards).write_atomic(json.dumps(meta.to_dict(), indent=1).encode(), PREPARE_JSON)


def unmark_shards(shards: str | Path) -> None:
    """Remove ``prepare.json``: the folder stops being shards (before its clips are replaced)."""
    locate(shards).delete(PREPARE_JSON)


@dataclass(frozen=True)
class Shards:
    """An opened shard folder: where it is (an absolute path, or a URI), its metadata, and
    its subjects' labels."""

    root: str
    meta: ShardMeta

    @classmethod
    def open(cls, path: str | Path) -> Shards:
        root = locate(path).where()
        return cls(root, read_prepare_meta(root))

    @property
    def clips(self) -> str:
        return clips_root(self.root)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.meta.class_names

    def check(self, data) -> None:
        """Refuse a run whose ``data`` section (T, S, alignment) differs from the shards'."""
        made = self.meta.data
        if made != data:
            raise ValueError(
                f"{self.root}: prepared with T={made.frames}, S={made.size}, eye_y={made.eye_y}, "
                f"inter_ocular={made.inter_ocular}, flow={made.flow}, registration="
                f"{made.registration}; this run's data section says T={data.frames}, "
                f"S={data.size}, eye_y={data.eye_y}, inter_ocular={data.inter_ocular}, "
                f"flow={data.flow}, registration={data.registration}. Leave the data settings "
                f"out (the shards' own are used), or prepare shards for these settings.")

    def subjects(self) -> list[str]:
        return shard_subjects(self.root)

    def subject_labels(self) -> dict[str, set[int]]:
        return subject_labels(self.root)

    def label_counts(self, subjects: Iterable[str]) -> list[int]:
        return label_counts(self.root, subjects, len(self.class_names))

    def clip_labels(self, subjects: Iterable[str]) -> tuple[list[str], list[int]]:
        return clip_labels(self.root, subjects)


def shard_subjects(shards: str | Path) -> list[str]:
    """Subjects present in a shard folder (its ``clips/subject=...`` partitions)."""
    store = locate(shards)
    names = [n for n in store.listdir(CLIPS_DIR) if n.startswith("subject=")]
    if not names:
        raise FileNotFoundError(f"{store.where(CLIPS_DIR)}: no shards here; create them with "
                                f"'mer-ray prepare'")
    return sorted(n.split("=", 1)[1] for n in names)


def read_partition(root: str | Path, subject: str, columns: Iterable[str],
                   optional: Iterable[str] = ()):
    """One subject's partition of a clip or token folder as a pyarrow Table (files in order).
    ``optional``: columns added when every file has them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = locate(root)
    files = [pq.ParquetFile(f, filesystem=store.fs)
             for f in store.files(f"subject={subject}", suffix=".parquet")]
    columns, read = list(columns), list(dict.fromkeys(["clip", *columns]))
    extra = [c for c in optional if files and all(c in f.schema_arrow.names for f in files)]
    tables = [f.read(columns=read + extra) for f in files]
    columns += extra
    table = pa.concat_tables(tables) if tables else None
    if table is None or table.num_rows == 0:
        # a training set silently smaller by a subject would move every figure
        raise FileNotFoundError(
            f"{store.where(f'subject={subject}')}: no clips in this subject's partition (its "
            f"files are missing or empty); prepare the shards again (mer-ray prepare "
            f"--overwrite), or delete the token folder above it to have it made again")
    clips = table.column("clip").to_pylist()
    if len(set(clips)) != len(clips):  # e.g. two passes that wrote one folder at once
        twice = sorted({c for c in clips if clips.count(c) > 1})
        raise ValueError(f"{store.where(f'subject={subject}')}: clip(s) {twice[:3]} appear in "
                         f"more than one file; delete this folder's parent and make it again "
                         f"(mer-ray prepare --overwrite for clips; tokens are remade by the "
                         f"next run)")
    return table.select(columns)


def _read_labels(shards: str | Path, subject: str) -> list[int]:
    return read_partition(clips_root(shards), subject, ["label_id"]).column("label_id") \
        .to_pylist()


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
    keys, labels = [], []
    for s in subjects:
        t = read_partition(clips_root(shards), s, ["clip", "label_id"])
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
                 columns: Iterable[str] = CLIP_COLUMNS, made_from: str = ""):
        """``made_from``: the ``shards_id`` the rows must have been made from (a fold's run's
        shards); checked in the rows' own column, or, for files without one (token folders,
        shards prepared before it), once against the folder's marker."""
        import pyarrow as pa

        subjects, columns = tuple(subjects), tuple(columns)
        tables = []
        self.per_subject = {}
        unchecked = False
        for s in subjects:
            t = read_partition(root, s, [c for c in columns if c != "subject"],
                               optional=(SHARDS_ID_COLUMN,) if made_from else ())
            if made_from and SHARDS_ID_COLUMN in t.column_names:
                found = set(t.column(SHARDS_ID_COLUMN).to_pylist())
                if found != {made_from}:
                    raise shards_changed(f"{root}/subject={s}", ", ".join(sorted(found)),
                                         made_from)
                t = t.drop_columns([SHARDS_ID_COLUMN])
            else:
                unchecked = bool(made_from)
            tables.append(t.append_column("subject", pa.array([s] * t.num_rows)))
            self.per_subject[s] = t.num_rows
        if not tables:
            raise FileNotFoundError(f"no subjects to read under {root}")
        if unchecked:
            check_made_from(root, made_from)
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


class ShardsChanged(ValueError):
    """What a fold reads is no longer what its run was planned on."""


def shards_id_of(root: str | Path) -> str | None:
    """The ``shards_id`` a folder of clips or tokens was made from: a token folder's own
    marker says it; a clip folder (``SHARDS/clips``) is its shard folder's."""
    store = locate(root)
    try:
        return json.loads(store.read_bytes(TOKENS_MARKER))["shards_id"]
    except (OSError, ValueError, KeyError):
        pass
    return read_prepare_meta(store.where().rsplit("/", 1)[0]).shards_id


def check_made_from(root: str | Path, shards_id: str) -> None:
    """Refuse to read ``root`` unless it was made from the shards ``shards_id`` (the shards a
    run was planned on): a ``prepare --overwrite`` of the folder during a run is refused, not
    read."""
    found = shards_id_of(root)
    if found != shards_id:
        raise shards_changed(root, found, shards_id)


def shards_changed(where: str | Path, found: str | None, planned: str) -> ShardsChanged:
    return ShardsChanged(
        f"{where}: made from shards {found}, but this run was planned on shards {planned}: "
        f"the folder was prepared again while the run was going. Run the same command again "
        f"(it plans on the shards as they are now), or use another --name")


def ray_dataset(root: str | Path, subjects: Iterable[str]):
    """The ``subject=...`` partitions of ``root`` for these subjects, as a Ray Dataset (for
    passes over whole folders, e.g. the trunk tokens)."""
    import ray.data
    from ray.data.datasource import Partitioning

    store = locate(root)
    missing = [s for s in subjects if not store.files(f"subject={s}", suffix=".parquet")]
    if missing:
        raise FileNotFoundError(f"no shards for subject(s) {missing} under {store.where()}")
    paths = [store.path(f"subject={s}") for s in subjects]
    # Reads request no CPU: a fold worker may hold every CPU while this runs. Ray 2.60's second
    # read path adds a file-listing step that always asks for one CPU, so the first path is
    # used here (the dataset keeps the context it was built with).
    ctx = ray.data.DataContext.get_current()
    previous, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        return ray.data.read_parquet(paths, filesystem=store.fs, num_cpus=0,
                                     partitioning=Partitioning("hive", base_dir=store.path()))
    finally:
        ctx.use_datasource_v2 = previous
