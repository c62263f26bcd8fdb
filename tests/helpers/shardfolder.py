"""A tiny shard folder written directly (no Ray, no alignment): random frames in the layout
``mer-ray prepare`` writes, for unit tests of everything downstream of the shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mer_ray.data.prepare import PrepareConfig
from mer_ray.data.shards import CLIPS_DIR, ShardMeta, Shards, subject_dir, write_prepare_meta

CLASSES = ("negative", "positive", "surprise")


def write_shards(root: Path, subjects=("s1", "s2", "s3", "s4"), per_class: int = 1,
                 frames: int = 4, size: int = 28, seed: int = 0) -> Shards:
    """``per_class`` clips of each class per subject; each class's frames carry a bright
    square in its own place, so a model can learn them."""
    rng = np.random.default_rng(seed)
    for s in subjects:
        clips, labels, data = [], [], []
        for label in range(len(CLASSES)):
            for k in range(per_class):
                x = rng.integers(0, 80, (frames, size, size, 3), dtype=np.uint8)
                x[frames // 2:, 4 + 6 * label:10 + 6 * label, 4:10] = 250
                clips.append(f"{s}_{label}_{k}")
                labels.append(label)
                data.append(x)
        table = pa.table({"clip": clips, "label_id": pa.array(labels, pa.int64()),
                          "frames": pa.FixedShapeTensorArray.from_numpy_ndarray(
                              np.stack(data))})
        folder = subject_dir(root / CLIPS_DIR, s)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet")
    from dataclasses import asdict

    write_prepare_meta(root, ShardMeta(
        class_names=CLASSES, config=asdict(PrepareConfig(frames=frames, size=size)),
        shards_id=f"test{seed}", clips=len(subjects) * per_class * len(CLASSES),
        dataset="samm", protocol="3class", synthetic=True, root=str(root)))
    return Shards.open(root)
