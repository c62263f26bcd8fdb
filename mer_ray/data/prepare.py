"""Aligned frame shards: manifest clips -> T aligned frames each -> Parquet, partitioned by subject.

The per-clip work (read the span, sample T frames, align each) runs in Ray Data ``map_batches``
tasks, so it spreads over every core of a machine or every node of a cluster. The layout it
writes is described in ``shards.py``: one row per clip under ``clips/subject=<id>/``, frames
(T, S, S, 3) uint8; ``rejected.parquet`` (every clip not in clips/, with stage and reason);
``manifest.parquet``; ``prepare.json`` (settings, class names, counts, code version, annotation
files and ``shards_id``), written last: it is the marker that makes the folder shards, and is
removed first when clips are written again (with the derived ``trunk/`` folder). ``out`` may be
a local folder or an object-store URI (``s3://bucket/shards``): Ray Data's tasks write the clips
to it directly.

``shards_id`` hashes what the shards are made of (every manifest row and the prepare settings).
What is derived from the shards (trunk tokens, LOSO runs) records it, so shards aligned again
from other data in the same folder are never mistaken for the old ones.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ..config import DataConfig
from ..storage import Storage, locate
from .align import AlignGeometry, NoFaceError, align_clip, align_pair
from .aus import aus_text
from .flow import apex_position, flow_columns
from .frames import FrameError, index_frames, read_frames
from .manifest import annotation_files, included
from .sampling import uniform_indices
from .shards import (
    CLIPS_DIR,
    SHARDS_ID_COLUMN,
    TRUNK_DIR,
    ShardMeta,
    unmark_shards,
    write_prepare_meta,
)

META_COLUMNS = ["dataset", "subject", "clip", "emotion", "label", "label_id", "aus", "onset", "apex",
                "offset", "source"]
# Short prepare-stage rejection reasons; details go to ``notes``.
UNREADABLE = "unreadable frames"
NO_FACE = "no face found"
NO_FRAMES = "frames missing on disk"
ZERO_FLOW = "the apex is the onset frame: the onset -> apex flow is zero"


@dataclass(frozen=True)
class PrepareConfig:
    """How ``prepare`` aligns clips: the frame settings (T, S, geometry; their defaults and
    checks are ``DataConfig``'s) and how the work is cut up."""

    frames: int = DataConfig.frames
    size: int = DataConfig.size
    geometry: AlignGeometry = field(default_factory=AlignGeometry)
    clips_per_task: int = 4  # clips handed to one Ray Data task
    min_rows_per_file: int = 32  # keeps shard files at tens of MB, not one file per clip
    flow: str | None = None  # onset -> apex optical flow backend (flow.BACKENDS), or none
    registration: str = DataConfig.registration  # of the apex to the onset, for the flow

    def __post_init__(self):
        self.data_config()  # DataConfig's checks

    @classmethod
    def from_data(cls, data: DataConfig) -> PrepareConfig:
        return cls(frames=data.frames, size=data.size, flow=data.flow,
                   registration=data.registration,
                   geometry=AlignGeometry(eye_y=data.eye_y, inter_ocular=data.inter_ocular))

    def data_config(self) -> DataConfig:
        return DataConfig(frames=self.frames, size=self.size, eye_y=self.geometry.eye_y,
                          inter_ocular=self.geometry.inter_ocular, flow=self.flow,
                          registration=self.registration)


def shards_identity(manifest: pl.DataFrame, cfg: PrepareConfig) -> str:
    """A short hash of every manifest row (source paths included) and the prepare settings."""
    settings = asdict(cfg)
    if cfg.flow is None:  # shards without flow keep the id they had before flow existed
        del settings["flow"], settings["registration"]
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for row in manifest.sort(["subject", "clip"]).iter_rows():
        h.update(repr(row).encode())
    return h.hexdigest()[:16]


def sample_and_align(index, span: list[int], cfg: PrepareConfig):
    """T positions spread uniformly over ``span`` (positions into ``index``), read and aligned:
    (frames (T, S, S, 3) uint8, frame numbers (T,), face found (T,)). Training shards and
    ``mer-ray predict`` both go through here, so a model sees the same input in both."""
    chosen = [span[i] for i in uniform_indices(len(span), cfg.frames)]
    aligned, found = align_clip(read_frames(index, chosen), cfg.size, cfg.geometry)
    return aligned, np.array([index.numbers[p] for p in chosen], np.int64), np.array(found)


def prepare_clip(row: dict, cfg: PrepareConfig) -> dict:
    """Sample and align one manifest clip.

    Returns ``frames`` (T, S, S, 3) uint8, ``frame_numbers`` (T,), ``face_found`` (T,) and an empty
    ``rejected_reason``; or, when the clip cannot be used, a non-empty ``rejected_reason`` and
    ``notes`` naming the file (frames then zero).
    """
    t, s = cfg.frames, cfg.size
    out = {"frames": np.zeros((t, s, s, 3), np.uint8), "frame_numbers": np.full(t, -1, np.int64),
           "face_found": np.zeros(t, bool), "rejected_reason": "", "notes": ""}
    if cfg.flow:
        out.update(empty_flow(s))
    if not Path(row["source"]).exists():
        out.update(rejected_reason=NO_FRAMES, notes=f"{row['source']}: no longer on disk")
        return out
    try:
        index = index_frames(row["source"])
        span = index.span(int(row["onset"]), int(row["offset"]))
        if not span:
            out.update(rejected_reason=NO_FRAMES,
                       notes=f"{row['source']}: no frames numbered {row['onset']}..{row['offset']}")
            return out
        aligned, numbers, found = sample_and_align(index, span, cfg)
        if cfg.flow:
            out.update(clip_flow(index, span, row.get("apex"), cfg))
    except FrameError as exc:
        out.update(rejected_reason=UNREADABLE, notes=str(exc))
        return out
    except NoFaceError as exc:
        out.update(rejected_reason=NO_FACE, notes=f"{row['source']}: {exc}")
        return out
    out.update(frames=aligned, frame_numbers=numbers, face_found=found)
    if not all(found):
        out["notes"] = (f"{t - sum(found)} of {t} sampled frames had no face and reuse the "
                        f"nearest frame's alignment")
    return out


def empty_flow(size: int) -> dict:
    """The flow columns of a clip that has none (rejected before its flow was computed)."""
    zeros = np.zeros((size, size), np.float16)
    frame = np.zeros((size, size, 3), np.uint8)
    return {"flow_u": zeros, "flow_v": zeros, "strain": zeros, "onset_frame": frame,
            "apex_frame": frame, "flow_note": ""}


def clip_flow(index, span: list[int], apex, cfg: PrepareConfig) -> dict:
    """The flow columns of one clip: its onset and apex frames (the span's middle when the
    apex is missing or outside it), the apex registered to the onset as ``cfg.registration``
    says (``align.align_pair``), and the flow between them."""
    apex = None if apex is None or (isinstance(apex, float) and np.isnan(apex)) else int(apex)
    pos, note = apex_position(span, list(index.numbers), apex)
    if pos == span[0]:  # nothing between onset and apex: the flow is zero by construction
        note = "; ".join(n for n in (note, ZERO_FLOW) if n)
    first, peak = read_frames(index, [span[0], pos])
    onset, peak, registered = align_pair(first, peak, cfg.size, cfg.geometry, cfg.registration)
    return flow_columns(onset, peak, cfg.flow, "; ".join(n for n in (note, registered) if n))


def _align_batch(batch: dict[str, np.ndarray], cfg: PrepareConfig) -> dict[str, np.ndarray]:
    import cv2

    cv2.setNumThreads(1)  # one task per core already; OpenCV's own threads would oversubscribe
    n = len(batch["clip"])
    results = [prepare_clip({k: batch[k][i] for k in batch}, cfg) for i in range(n)]
    out = {k: batch[k] for k in META_COLUMNS if k != "apex"}
    arrays = ("frames", "frame_numbers", "face_found")
    if cfg.flow:
        arrays += ("flow_u", "flow_v", "strain", "onset_frame", "apex_frame")
        out["flow_note"] = np.array([r["flow_note"] for r in results], dtype=object)
    for key in arrays:
        out[key] = np.stack([r[key] for r in results])
    out["rejected_reason"] = np.array([r["rejected_reason"] for r in results], dtype=object)
    out["notes"] = np.array([r["notes"] for r in results], dtype=object)
    return out


@dataclass
class PrepareResult:
    out: str  # a local path or a URI
    clips: int
    rejected: pl.DataFrame
    seconds: float
    frames_aligned: int
    per_class: dict[str, int]


def refuse_overwrite(out: str | Path) -> None:
    """Refuse an ``out`` that already holds clip files (finished shards or a killed
    prepare's)."""
    store = locate(out)
    if store.files(CLIPS_DIR):
        raise FileExistsError(f"{store.where(CLIPS_DIR)} already holds shards; pass "
                              f"--overwrite to replace them or choose another --out")


def _clear(out: Storage, overwrite: bool) -> None:
    """Room for new shards in ``out``: existing clips only with ``overwrite``; the marker goes
    first (the folder stops being shards before any of its clips do), and what was derived
    from old clips (trunk tokens) always goes."""
    if not overwrite:
        refuse_overwrite(out.where())
    unmark_shards(out.where())
    out.delete(CLIPS_DIR)
    out.delete(TRUNK_DIR)


def _align_all(rows: list[dict], cfg: PrepareConfig, workers: int | None):
    """Every clip sampled and aligned by Ray Data tasks: (dataset, its rows' metadata)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # same shards for the same manifest
    blocks = max(1, min(len(rows), -(-len(rows) // cfg.clips_per_task)))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(_align_batch, fn_kwargs={"cfg": cfg}, batch_size=cfg.clips_per_task,
                        num_cpus=1, concurrency=workers).materialize()
    return ds, ds.drop_columns(["frames"]).to_pandas()


def _write_clips(ds, out: Storage, cfg: PrepareConfig, shards_id: str) -> None:
    """The aligned clips, partitioned by subject; every row carries the ``shards_id`` of what
    it was made from, so a fold checks its data in the files it reads anyway (no read of
    ``prepare.json`` per fold)."""
    import pyarrow as pa

    def stamp(batch):
        return pa.array([shards_id] * batch.num_rows, pa.string())

    with warnings.catch_warnings():
        # Ray suggests a hash repartition instead of min_rows_per_file with partition
        # columns; for a few hundred clips that shuffle costs more than it saves.
        warnings.simplefilter("ignore", DeprecationWarning)
        (ds.filter(expr="rejected_reason == ''")
           .drop_columns(["rejected_reason"])
           .add_column(SHARDS_ID_COLUMN, stamp, batch_format="pyarrow")
           .write_parquet(out.path(CLIPS_DIR), filesystem=out.fs, partition_cols=["subject"],
                          min_rows_per_file=cfg.min_rows_per_file))


def _rejected(manifest: pl.DataFrame, meta) -> pl.DataFrame:
    """Every clip that is not in the shards: excluded by the manifest, or at alignment."""
    parts = [manifest.filter(pl.col("excluded_reason").is_not_null())
             .select("dataset", "subject", "clip", "label", "source",
                     pl.col("excluded_reason").alias("reason"), "notes")
             .with_columns(stage=pl.lit("manifest"))]
    bad = meta[meta["rejected_reason"] != ""] if meta is not None else []
    if len(bad):
        parts.append(pl.from_pandas(bad[["dataset", "subject", "clip", "label", "source",
                                         "rejected_reason", "notes"]])
                     .rename({"rejected_reason": "reason"}).with_columns(stage=pl.lit("prepare")))
    return pl.concat(
        [p.select("stage", "dataset", "subject", "clip", "label", "reason", "notes", "source")
         .cast({"label": pl.Utf8, "notes": pl.Utf8}) for p in parts], how="vertical")


def prepare_shards(
    manifest: pl.DataFrame,
    out: str | Path,
    cfg: PrepareConfig | None = None,
    *,
    class_names: tuple[str, ...],
    workers: int | None = None,
    overwrite: bool = False,
    extra_meta: dict | None = None,
) -> PrepareResult:
    """Align every included clip of ``manifest`` and write the shards under ``out``.

    ``workers`` bounds the number of concurrent Ray Data tasks (None: as many as Ray allows).
    ``extra_meta``: dataset, protocol, root, synthetic, annotations (``ShardMeta`` fields).
    Ray must be initialised by the caller (``mer_ray.cluster.ensure_ray``).
    """
    from ..provenance import code_version

    cfg = cfg or PrepareConfig()
    store = locate(out)
    _clear(store, overwrite)
    start = time.perf_counter()
    rows = included(manifest).sort(["subject", "clip"]).select(META_COLUMNS).to_dicts()
    for r in rows:  # the AU set as text in the shards ("4,10"; "" none; "not coded"): a plain
        # column any Parquet reader takes (a list would become Ray's tensor type)
        r["aus"] = aus_text(r["aus"])
    shards_id = shards_identity(manifest, cfg)
    meta, per_class, good = None, {}, 0
    if rows:
        ds, meta = _align_all(rows, cfg, workers)
        kept = meta[meta["rejected_reason"] == ""]
        good, per_class = len(kept), kept["label"].value_counts().to_dict()
        if good:
            _write_clips(ds, store, cfg, shards_id)
    rejected = _rejected(manifest, meta)
    store.write_parquet(rejected, "rejected.parquet")
    store.write_parquet(manifest, "manifest.parquet")
    seconds = time.perf_counter() - start
    per_class = {k: int(v) for k, v in sorted(per_class.items())}
    write_prepare_meta(store.where(), ShardMeta(
        class_names=tuple(class_names), config=asdict(cfg),
        shards_id=shards_id, clips=good, per_class=per_class,
        rejected=rejected.height, seconds=round(seconds, 2), code_version=code_version(),
        annotation_files=[{"file": f, "sha256": h} for f, h in annotation_files(manifest)],
        **{k: v for k, v in (extra_meta or {}).items()}))
    return PrepareResult(store.where(), good, rejected, seconds, len(rows) * cfg.frames, per_class)


def prepare_clips(manifest: pl.DataFrame, out: str | Path, data: DataConfig, dataset: str,
                  protocol: str, root: Path, annotations: Path | None = None,
                  workers: int | None = None, overwrite: bool = False) -> PrepareResult:
    """``mer-ray prepare``: the manifest's clips aligned with ``data``'s frame settings into
    ``out``, with a line at least every few seconds while Ray Data works."""
    from ..console import Ticker
    from .labels import class_names
    from .synth import is_synthetic

    with Ticker(f"aligning {int(manifest['excluded_reason'].is_null().sum())} clips into "
                f"{out} (Ray Data)"):
        return prepare_shards(
            manifest, out, PrepareConfig.from_data(data),
            class_names=class_names(dataset, protocol), workers=workers, overwrite=overwrite,
            extra_meta={"dataset": dataset, "protocol": protocol,
                        "root": str(Path(root).resolve()), "synthetic": is_synthetic(root),
                        "annotations": str(Path(annotations).resolve()) if annotations
                        else None})


def prepare_config_from_dict(data: dict) -> PrepareConfig:
    """The inverse of ``asdict(PrepareConfig)`` (as stored in prepare.json and checkpoints)."""
    data = dict(data)
    geometry = AlignGeometry(**data.pop("geometry", {}))
    return PrepareConfig(geometry=geometry, **data)
