"""A tiny shard folder written directly (no Ray, no alignment): random frames in the layout
``mer-ray prepare`` writes, for unit tests of everything downstream of the shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mer_ray.data.prepare import PrepareConfig
from mer_ray.data.shards import (
    CLIPS_DIR,
    SHARDS_ID_COLUMN,
    ShardMeta,
    Shards,
    subject_dir,
    write_prepare_meta,
)

CLASSES = ("negative", "positive", "surprise")


def _flow(label: int, size: int, rng) -> dict:
    """Flow columns in which each class moves a patch of its own: right, down or outwards."""
    u = rng.normal(0, 0.05, (size, size)).astype(np.float32)
    v = rng.normal(0, 0.05, (size, size)).astype(np.float32)
    patch = (slice(size // 4, size // 2), slice(size // 4, size // 2))
    if label == 0:
        u[patch] += 1.0
    elif label == 1:
        v[patch] += 1.0
    else:
        ys, xs = np.mgrid[0:size, 0:size]
        u += 0.05 * (xs - size / 2)
        v += 0.05 * (ys - size / 2)
    from mer_ray.data.flow import optical_strain

    frame = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return {"flow_u": u.astype(np.float16), "flow_v": v.astype(np.float16),
            "strain": optical_strain(u, v).astype(np.float16), "onset_frame": frame,
            "apex_frame": frame, "flow_note": ""}


def write_shards(root: Path, subjects=("s1", "s2", "s3", "s4"), per_class: int = 1,
                 frames: int = 4, size: int = 28, seed: int = 0,
                 flow: str | None = None, stamped: bool = True) -> Shards:
    """``per_class`` clips of each class per subject; each class's frames carry a bright
    square in its own place, so a model can learn them. ``flow``: flow columns too (a
    backend's name for prepare.json; the fields are made up: each class moves its own way).
    ``stamped``: each row carries the shards_id, as ``prepare`` writes it (off: shards from
    before that column)."""
    rng = np.random.default_rng(seed)
    for s in subjects:
        clips, labels, data, flows = [], [], [], []
        for label in range(len(CLASSES)):
            for k in range(per_class):
                x = rng.integers(0, 80, (frames, size, size, 3), dtype=np.uint8)
                x[frames // 2:, 4 + 6 * label:10 + 6 * label, 4:10] = 250
                clips.append(f"{s}_{label}_{k}")
                labels.append(label)
                data.append(x)
                flows.append(_flow(label, size, rng))
        columns = {"clip": clips, "label_id": pa.array(labels, pa.int64()),
                   "frames": pa.FixedShapeTensorArray.from_numpy_ndarray(np.stack(data))}
        if flow:
            for key in ("flow_u", "flow_v", "strain", "onset_frame", "apex_frame"):
                columns[key] = pa.FixedShapeTensorArray.from_numpy_ndarray(
                    np.stack([f[key] for f in flows]))
            columns["flow_note"] = [f["flow_note"] for f in flows]
        if stamped:
            columns[SHARDS_ID_COLUMN] = [f"test{seed}"] * len(clips)
        table = pa.table(columns)
        folder = Path(subject_dir(root / CLIPS_DIR, s))
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet")
    from dataclasses import asdict

    write_prepare_meta(root, ShardMeta(
        class_names=CLASSES,
        config=asdict(PrepareConfig(frames=frames, size=size, flow=flow)),
        shards_id=f"test{seed}", clips=len(subjects) * per_class * len(CLASSES),
        dataset="samm", protocol="3class", synthetic=True, root=str(root)))
    return Shards.open(root)
