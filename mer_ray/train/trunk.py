"""Frozen-trunk tokens computed once per shard folder and shared by every fold.

With ``train.cache_trunk`` the patch embedding and the blocks before the LoRA blocks never
change, and every fold builds the same trunk (same seed, same weights), so every fold would
compute the same tokens for the same clip. ``ensure_trunk_tokens`` computes them once, in a Ray
Data pass over the clip shards (actors holding a fold's resources), and writes::

    SHARDS/trunk/<fingerprint>/subject=006/*.parquet   subject, clip, label_id,
                                                       tokens (T, L, D) float16
    SHARDS/trunk/<fingerprint>/tokens.json             what made them (written last)

The fingerprint is a hash of the trunk's weights and the input size: another backbone, other
weights or another seed never read stale tokens, and a fold refuses tokens whose fingerprint is
not that of the trunk it built. The marker also records the shards' ``shards_id``: tokens of
clips since aligned again from other data are computed anew. The fold readers then stream
tokens instead of frames; the control run (shuffled labels) and a resumed run reuse them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..data.shards import (
    CLIP_COLUMNS,
    TOKEN_COLUMNS,  # noqa: F401  (what the token folders hold)
    TRUNK_DIR,
    clips_root,
    ray_dataset,
    read_prepare_meta,
    shard_subjects,
)
from .build import TrunkMismatch, build_model, trunk_fingerprint
from .config import ExperimentConfig

MARKER = "tokens.json"
BATCH = 16  # clips per forward pass; the same in every executor


def encode_frames(net, frames: np.ndarray, device) -> np.ndarray:
    """uint8 frames (B, T, S, S, 3) -> trunk tokens (B, T, L, D) float16, as numpy."""
    from ..model.inputs import clips_to_tensor

    return net.trunk_tokens(clips_to_tensor(frames).to(device)).half().cpu().numpy()


class TrunkEncoder:
    """Ray Data actor: builds the fold model once, checks its trunk, encodes batches."""

    def __init__(self, experiment: dict, num_classes: int, threads: int, use_gpu: bool,
                 fingerprint: str):
        torch.set_num_threads(threads)
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.net = build_model(ExperimentConfig.from_dict(experiment), num_classes)
        got = trunk_fingerprint(self.net)
        if got != fingerprint:  # e.g. a node whose weights cache holds other weights
            raise TrunkMismatch(f"this node built a trunk with fingerprint {got[:16]}, the "
                                f"driver {fingerprint[:16]}: are the backbone weights the same "
                                f"everywhere?")
        self.net = self.net.to(self.device).eval()

    def __call__(self, batch: dict) -> dict:
        return {"subject": batch["subject"], "clip": batch["clip"],
                "label_id": batch["label_id"],
                "tokens": encode_frames(self.net, batch["frames"], self.device)}


def token_root(shards: str | Path, fingerprint: str) -> Path:
    return Path(shards) / TRUNK_DIR / fingerprint[:16]


def read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def ensure_trunk_tokens(shards: str | Path, exp: ExperimentConfig, num_classes: int,
                        use_gpu: bool = False, slots: int = 1,
                        compute: bool = True) -> tuple[Path, str] | None:
    """(token folder, trunk fingerprint) for these shards and this configuration's trunk,
    computing the tokens if no finished folder exists (Ray must then be initialised). With
    ``compute=False``, None when there is no finished folder."""
    import ray.data

    from ..provenance import code_version

    if not exp.model.trunk_frozen:
        raise ValueError("finetune='full' trains the whole backbone: there is no frozen trunk "
                         "to share")
    fingerprint = trunk_fingerprint(build_model(exp, num_classes))
    shards_id = read_prepare_meta(shards).get("shards_id")
    root = token_root(shards, fingerprint)
    marker = read_marker(root)
    if (marker is not None and marker.get("fingerprint") == fingerprint
            and marker.get("shards_id") == shards_id):
        return root, fingerprint
    if not compute:
        return None
    start = time.perf_counter()
    partial = root.with_name(f"{root.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)  # an unfinished pass (no marker)
    tc = exp.train
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    clips = ray_dataset(clips_root(shards), shard_subjects(shards))
    tokens = clips.select_columns(list(CLIP_COLUMNS), num_cpus=0).map_batches(
        TrunkEncoder, batch_size=BATCH, batch_format="numpy",
        fn_constructor_kwargs={"experiment": exp.to_dict(), "num_classes": num_classes,
                               "threads": tc.cpus_per_fold, "use_gpu": use_gpu,
                               "fingerprint": fingerprint},
        num_cpus=tc.cpus_per_fold, num_gpus=1 if use_gpu else 0,
        resources=tc.fold_resources or None, concurrency=(1, max(1, slots)))
    tokens.write_parquet(str(partial), partition_cols=["subject"])
    partial.rename(root)
    import pyarrow.parquet as pq

    n = sum(pq.ParquetFile(f).metadata.num_rows for f in root.rglob("*.parquet"))
    (root / MARKER).write_text(json.dumps({
        "fingerprint": fingerprint, "clips": n, "shards": str(Path(shards).resolve()),
        "shards_id": shards_id,
        "backbone": exp.model.backbone, "image_size": exp.model.image_size,
        "seconds": round(time.perf_counter() - start, 2), "code_version": code_version(),
    }, indent=1))
    return root, fingerprint
