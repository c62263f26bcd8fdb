"""Frozen-trunk tokens computed once per shard folder and shared by every fold.

With ``train.cache_trunk`` the patch embedding and the blocks before the LoRA blocks never
change, and every fold builds the same trunk (same seed, same weights), so every fold would
compute the same tokens for the same clip. ``ensure_trunk_tokens`` computes them once, in a Ray
Data pass over the clip shards (actors holding a fold's resources), or, when the whole pass is
a few seconds of compute, in this process (starting encoder actors would cost more than the
pass: on the 2-core demo, 22 s against 3 s), and writes::

    SHARDS/trunk/<fingerprint>/subject=006/*.parquet   subject, clip, label_id,
                                                       tokens (T, L, D) float16
    SHARDS/trunk/<fingerprint>/tokens.json             what made them (written last)
    SHARDS/trunk/<fingerprint>-<views_id>/             the same plus ``views``
                                                       (V-1, T, L, D): augmented views

With ``train.cached_views`` > 1 the pass also encodes each clip's augmented views (the training
augmentation the trunk cache otherwise gives up, drawn once per clip and view); training clips
are then seen through one of their views each epoch, validation and test clips never.

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
import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import BACKBONES, ExperimentConfig
from ..data.shards import (
    CLIP_COLUMNS,
    TOKEN_COLUMNS,  # noqa: F401  (what the token folders hold)
    TRUNK_DIR,
    clip_keys,
    clips_root,
    ray_dataset,
    read_prepare_meta,
    shard_subjects,
)
from ..model.build import TrunkMismatch, build_model, trunk_fingerprint

MARKER = "tokens.json"
BATCH = 16  # clips per forward pass; the same in every executor


def encode_frames(net, frames: np.ndarray, device) -> np.ndarray:
    """uint8 frames (B, T, S, S, 3) -> trunk tokens (B, T, L, D) float16, as numpy."""
    from ..model.inputs import clips_to_tensor

    return net.trunk_tokens(clips_to_tensor(frames).to(device)).half().cpu().numpy()


def encode_views(net, frames: np.ndarray, keys: list[str], tc, device) -> np.ndarray:
    """uint8 frames (B, T, S, S, 3) -> trunk tokens of each clip's augmented views
    (B, tc.cached_views - 1, T, L, D) float16 (``augment.clip_views``), in passes of ``BATCH``."""
    from ..model.inputs import clips_to_tensor
    from .augment import clip_views

    views = clip_views(clips_to_tensor(frames), list(keys), tc)  # (B, V-1, T, 3, S, S)
    flat = views.flatten(0, 1)
    out = torch.cat([net.trunk_tokens(flat[i:i + BATCH].to(device)).half().cpu()
                     for i in range(0, len(flat), BATCH)])
    return out.view(*views.shape[:2], *out.shape[1:]).numpy()


class TrunkEncoder:
    """Ray Data actor: builds the fold model once, checks its trunk, encodes batches."""

    def __init__(self, experiment: dict, num_classes: int, threads: int, use_gpu: bool,
                 fingerprint: str):
        torch.set_num_threads(threads)
        self.device = torch.device("cuda" if use_gpu else "cpu")
        exp = ExperimentConfig.from_dict(experiment)
        self.train_cfg = exp.train
        self.net = build_model(exp, num_classes)
        got = trunk_fingerprint(self.net)
        if got != fingerprint:  # e.g. a node whose weights cache holds other weights
            raise TrunkMismatch(f"this node built a trunk with fingerprint {got[:16]}, the "
                                f"driver {fingerprint[:16]}: are the backbone weights the same "
                                f"everywhere?")
        self.net = self.net.to(self.device).eval()

    def __call__(self, batch: dict) -> dict:
        out = {"subject": batch["subject"], "clip": batch["clip"],
               "label_id": batch["label_id"],
               "tokens": encode_frames(self.net, batch["frames"], self.device)}
        if self.train_cfg.cached_views > 1:
            out["views"] = encode_views(self.net, batch["frames"], clip_keys(batch),
                                        self.train_cfg, self.device)
        return out


def token_root(shards: str | Path, fingerprint: str, views_id: str | None = None) -> Path:
    """The token folder of a trunk; with augmented views (``TrainConfig.views_id``) its own."""
    name = fingerprint[:16] if views_id is None else f"{fingerprint[:16]}-{views_id}"
    return Path(shards) / TRUNK_DIR / name


def read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


# Passes estimated below this many floating-point operations run in this process (about 10 s
# on a 2-core CPU: the demo's 4.6e11 took 4.8 s here, its Ray Data pass 18 s).
HERE_MAX_FLOPS = 1e12


def pass_flops(shards: str | Path, exp: ExperimentConfig) -> float:
    """Rough cost of encoding every clip: frames x views x tokens x trunk blocks x 24 D^2."""
    meta = read_prepare_meta(shards)
    frames = meta.get("clips", 0) * meta.get("config", {}).get("frames", 8)
    tokens = 1 + (exp.model.image_size // 14) ** 2
    blocks, dim = BACKBONES[exp.model.backbone]
    trunk_blocks = blocks - exp.model.lora_blocks if exp.model.uses_lora else blocks
    return float(frames * exp.train.cached_views * tokens * trunk_blocks * 24 * dim * dim)


def pass_place(shards: str | Path, exp: ExperimentConfig) -> str:
    """Where ``ensure_trunk_tokens(where="auto")`` computes a pass: "here" or "ray"."""
    return "here" if pass_flops(shards, exp) <= HERE_MAX_FLOPS else "ray"


def encode_here(shards: str | Path, net, out: Path, device, tc=None) -> None:
    """The token pass in this process: each subject's clips in batches of ``BATCH``, written
    as the Ray Data pass writes them (one folder per subject); with ``tc.cached_views`` > 1
    each clip's augmented views too."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..data.shards import SubjectReader, subject_dir

    net = net.to(device).eval()
    for subject in shard_subjects(shards):
        reader = SubjectReader(clips_root(shards), (subject,), CLIP_COLUMNS)
        clips, labels, tokens, views = [], [], [], []
        for batch in reader.iter_batches(batch_size=BATCH):
            clips += list(batch["clip"])
            labels += [int(y) for y in batch["label_id"]]
            tokens.append(encode_frames(net, batch["frames"], device))
            if tc is not None and tc.cached_views > 1:
                views.append(encode_views(net, batch["frames"], clip_keys(batch), tc, device))
        columns = {"clip": clips, "label_id": pa.array(labels, pa.int64()),
                   "tokens": pa.FixedShapeTensorArray.from_numpy_ndarray(np.concatenate(tokens))}
        if views:
            columns["views"] = pa.FixedShapeTensorArray.from_numpy_ndarray(np.concatenate(views))
        table = pa.table(columns)
        folder = subject_dir(out, subject)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet")


def ensure_trunk_tokens(shards: str | Path, exp: ExperimentConfig, num_classes: int,
                        use_gpu: bool = False, slots: int = 1,
                        compute: bool = True, where: str = "auto") -> tuple[Path, str] | None:
    """(token folder, trunk fingerprint) for these shards and this configuration's trunk,
    computing the tokens if no finished folder exists. ``where``: "ray" (a Ray Data pass;
    Ray must be initialised), "here" (this process), or "auto" ("here" for a pass of at most
    ``HERE_MAX_FLOPS``). With ``compute=False``, None when there is no finished folder."""
    from ..provenance import code_version

    if not exp.model.trunk_frozen:
        raise ValueError("finetune='full' trains the whole backbone: there is no frozen trunk "
                         "to share")
    net = build_model(exp, num_classes)
    fingerprint = trunk_fingerprint(net)
    shards_id = read_prepare_meta(shards).get("shards_id")
    views_id = exp.train.views_id
    root = token_root(shards, fingerprint, views_id)
    marker = read_marker(root)
    if (marker is not None and marker.get("fingerprint") == fingerprint
            and marker.get("shards_id") == shards_id and marker.get("views") == views_id):
        return root, fingerprint
    if not compute:
        return None
    start = time.perf_counter()
    partial = root.with_name(f"{root.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)  # an unfinished pass (no marker)
    if where == "auto":
        where = pass_place(shards, exp)
    if where == "here":
        encode_here(shards, net, partial,
                    torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu"),
                    exp.train)
    else:
        ray_pass(shards, exp, num_classes, use_gpu, slots, fingerprint, partial)
    partial.rename(root)
    import pyarrow.parquet as pq

    n = sum(pq.ParquetFile(f).metadata.num_rows for f in root.rglob("*.parquet"))
    (root / MARKER).write_text(json.dumps({
        "fingerprint": fingerprint, "clips": n, "shards": str(Path(shards).resolve()),
        "shards_id": shards_id, "computed": where, "views": views_id,
        "cached_views": exp.train.cached_views,
        "backbone": exp.model.backbone, "image_size": exp.model.image_size,
        "seconds": round(time.perf_counter() - start, 2), "code_version": code_version(),
    }, indent=1))
    return root, fingerprint


def ray_pass(shards, exp: ExperimentConfig, num_classes: int, use_gpu: bool, slots: int,
             fingerprint: str, out: Path) -> None:
    """The token pass as Ray Data actors holding a fold's resources, up to ``slots`` of them."""
    import ray.data

    tc = exp.train
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    clips = ray_dataset(clips_root(shards), shard_subjects(shards))
    with warnings.catch_warnings():
        # max_restarts has no named parameter (yet): the remote-args hook is the way to it
        warnings.simplefilter("ignore", DeprecationWarning)
        tokens = clips.select_columns(list(CLIP_COLUMNS), num_cpus=0).map_batches(
            TrunkEncoder, batch_size=BATCH, batch_format="numpy",
            fn_constructor_kwargs={"experiment": exp.to_dict(), "num_classes": num_classes,
                                   "threads": tc.cpus_per_fold, "use_gpu": use_gpu,
                                   "fingerprint": fingerprint},
            num_cpus=tc.cpus_per_fold, num_gpus=tc.gpus_per_fold if use_gpu else 0,
            resources=tc.fold_resources or None,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, slots)),
            # a lost encoder fails the pass (rerun whole), never restarts half-way
            ray_remote_args_fn=lambda: {"max_restarts": 0})
    tokens.write_parquet(str(out), partition_cols=["subject"])
