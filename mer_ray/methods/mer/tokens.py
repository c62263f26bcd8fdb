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

Tokens live beside the shards, wherever those are, one folder per pass: a pass writes its
tokens into ``<folder>/pass-<id>/`` with its own ``tokens.json`` last, then publishes it by
writing ``<folder>/tokens.json``, which names the pass (the folds read ``pass-<id>``). A
folder is finished when that pointer exists; nothing a pass writes is ever another pass's.

Two runs that need the same tokens at once (on one machine or two, in a folder or on an object
store) do not both compute them: a pass holds a lease, ``<folder>/pass.lease`` (its owner and
an expiry it renews while it works). A lease object rather than a lock file or a conditional
write: pyarrow's file systems offer neither an exclusive create on object stores nor a
conditional put, and one mechanism serves folders and stores alike. A run that finds a live
lease waits, then reads the other pass's result; one that finds it expired takes it over and
deletes the dead pass's folder. Taking the lease is write, wait ``SETTLE_S``, read back: of two
runs writing at the same moment, the later write wins and the other sees it. Should both still
believe they won, both compute, each into its own pass folder, and the pointer names a complete
pass either way: the price of the race is duplicate work, never a folder that looks finished
while it is not.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch

from ...config import BACKBONES, ExperimentConfig
from ...console import Ticker
from ...data.shards import (
    CLIP_COLUMNS,
    TOKENS_MARKER,
    TRUNK_DIR,
    Shards,
    clip_keys,
    ray_dataset,
)
from ...fitting.device import fold_device
from ...fitting.job import TokenSource
from ...fitting.memory import reuse_freed_memory
from ...model.build import TrunkMismatch, build_model, trunk_fingerprint
from ...model.encoder import BackboneSource
from ...provenance import libraries
from ...storage import locate

MARKER = TOKENS_MARKER  # a pass's record of what made its tokens, and the folder's pointer
LEASE = "pass.lease"
LEASE_S = 60.0  # a lease not renewed for this long belongs to a pass that died
SETTLE_S = 1.0  # between writing a lease and reading it back
WAIT_POLL_S = 1.0
BATCH = 16  # clips per forward pass; the same in every executor


def encode_frames(net, frames: np.ndarray, device) -> np.ndarray:
    """uint8 frames (B, T, S, S, 3) -> trunk tokens (B, T, L, D) float16, as numpy."""
    from ...model.inputs import clips_to_tensor

    return net.trunk_tokens(clips_to_tensor(frames).to(device)).half().cpu().numpy()


def encode_views(net, frames: np.ndarray, keys: list[str], tc, device) -> np.ndarray:
    """uint8 frames (B, T, S, S, 3) -> trunk tokens of each clip's augmented views
    (B, tc.cached_views - 1, T, L, D) float16 (``augment.clip_views``), in passes of ``BATCH``."""
    from ...model.inputs import clips_to_tensor
    from .augment import clip_views

    views = clip_views(clips_to_tensor(frames), list(keys), tc)  # (B, V-1, T, 3, S, S)
    flat = views.flatten(0, 1)
    out = torch.cat([net.trunk_tokens(flat[i:i + BATCH].to(device)).half().cpu()
                     for i in range(0, len(flat), BATCH)])
    return out.view(*views.shape[:2], *out.shape[1:]).numpy()


def made_with(backbone: BackboneSource) -> dict:
    """What a process builds a trunk with, as a mismatch message names it."""
    return {"weights": backbone.label, "pretrained": backbone.pretrained,
            "libraries": libraries()}


class TrunkEncoder:
    """Ray Data actor: builds the fold model once, checks its trunk, encodes batches."""

    def __init__(self, experiment: dict, num_classes: int, threads: int, use_gpu: bool,
                 backbone: BackboneSource, fingerprint: str, driver: dict):
        torch.set_num_threads(threads)
        reuse_freed_memory()
        self.device = fold_device(use_gpu)
        exp = ExperimentConfig.from_dict(experiment)
        self.train_cfg = exp.train
        self.net = build_model(exp, num_classes, backbone)
        got = trunk_fingerprint(self.net)
        if got != fingerprint:  # e.g. a node with other library versions
            raise TrunkMismatch(f"this node built a trunk with fingerprint {got[:16]} "
                                f"({made_with(backbone)}), the driver {fingerprint[:16]} "
                                f"({driver}): are the backbone weights and library versions "
                                f"the same everywhere?")
        self.net = self.net.to(self.device).eval()

    def __call__(self, batch: dict) -> dict:
        out = {"subject": batch["subject"], "clip": batch["clip"],
               "label_id": batch["label_id"],
               "tokens": encode_frames(self.net, batch["frames"], self.device)}
        if self.train_cfg.cached_views > 1:
            out["views"] = encode_views(self.net, batch["frames"], clip_keys(batch),
                                        self.train_cfg, self.device)
        return out


def token_root(shards: str | Path, fingerprint: str, views_id: str | None = None) -> str:
    """The token folder of a trunk (a path or URI); with augmented views
    (``TrainConfig.views_id``) its own. Its passes live under it (``finished``)."""
    name = fingerprint[:16] if views_id is None else f"{fingerprint[:16]}-{views_id}"
    return locate(shards).where(TRUNK_DIR, name)


def read_marker(root: str | Path) -> dict | None:
    try:
        return json.loads(locate(root).read_bytes(MARKER))
    except (OSError, ValueError):
        return None


def finished(root: str, fingerprint: str, views_id: str | None, shards: Shards) -> str | None:
    """Where the finished tokens of this trunk, views and shards are (a pass folder, or the
    folder itself for tokens made before passes had folders of their own), or None. The
    pointer must name this trunk, views, shards id and clip count."""
    marker = read_marker(root)
    if marker is None or marker.get("fingerprint") != fingerprint \
            or marker.get("views") != views_id \
            or marker.get("shards_id") != shards.meta.shards_id \
            or marker.get("clips") != shards.meta.clips:
        return None
    name = marker.get("pass")
    return locate(root).where(name) if name else str(root)


@contextlib.contextmanager
def pass_lease(root: str, ready):
    """Hold the lease of the token folder ``root`` while the body computes a pass; yields
    the pass id, or None when ``ready()`` (the finished tokens, or None) became true while
    waiting for another pass (then there is nothing to compute)."""
    with contextlib.ExitStack() as waiting:
        me = _take_lease(root, ready, waiting)
    if me is None:
        yield None
        return
    store = locate(root)
    stop = threading.Event()

    def renew():
        while not stop.wait(LEASE_S / 4):
            if (_lease(store) or {}).get("owner") == me:
                _write_lease(store, me)

    keeper = threading.Thread(target=renew, daemon=True)
    keeper.start()
    try:
        yield me
    finally:
        stop.set()
        keeper.join()
        if (_lease(store) or {}).get("owner") == me:
            store.delete(LEASE)


def _lease(store) -> dict | None:
    try:
        return json.loads(store.read_bytes(LEASE))
    except (OSError, ValueError):
        return None


def _write_lease(store, me: str) -> None:
    store.write_atomic(json.dumps({"owner": me, "expires": time.time() + LEASE_S}).encode(),
                       LEASE)


def _take_lease(root: str, ready, waiting: contextlib.ExitStack) -> str | None:
    """The lease taken (its owner id), or None once ``ready()``; while another live pass holds
    it, a line at least every ``TICK_S`` says so (``waiting`` closes it)."""
    store = locate(root)
    me, tick = uuid.uuid4().hex[:12], None
    while True:
        held = _lease(store)
        if held is None or held["expires"] < time.time():
            _write_lease(store, me)
            time.sleep(SETTLE_S)  # a second run writing now: the later write wins
            if (_lease(store) or {}).get("owner") == me:
                published = (read_marker(root) or {}).get("pass")
                if held is not None and published != f"pass-{held['owner']}":
                    store.delete(f"pass-{held['owner']}")  # a pass that stopped renewing
                for name in store.listdir():  # tokens an unfinished pass of old left here
                    if name.startswith("subject="):
                        store.delete(name)
                return me
            continue
        if ready() is not None:
            return None
        if tick is None:
            tick = waiting.enter_context(Ticker(
                f"waiting for another run's frozen-trunk token pass in {root}"))
        time.sleep(WAIT_POLL_S)


# Passes estimated below this many floating-point operations run in this process (about 10 s
# on a 2-core CPU: the demo's 4.6e11 took 4.8 s here, its Ray Data pass 18 s).
HERE_MAX_FLOPS = 1e12


def pass_flops(shards: Shards, exp: ExperimentConfig) -> float:
    """Rough cost of encoding every clip: frames x views x tokens x trunk blocks x 24 D^2."""
    frames = shards.meta.clips * shards.meta.data.frames
    tokens = 1 + (exp.data.size // 14) ** 2
    blocks, dim = BACKBONES[exp.model.backbone]
    trunk_blocks = blocks - exp.model.lora_blocks if exp.model.uses_lora else blocks
    return float(frames * exp.train.cached_views * tokens * trunk_blocks * 24 * dim * dim)


def pass_place(shards: Shards, exp: ExperimentConfig) -> str:
    """Where ``ensure_trunk_tokens(where="auto")`` computes a pass: "here" or "ray"."""
    return "here" if pass_flops(shards, exp) <= HERE_MAX_FLOPS else "ray"


def encode_here(shards: Shards, net, out: str, device, tc=None, progress=None) -> None:
    """The token pass in this process: each subject's clips in batches of ``BATCH``, written
    as the Ray Data pass writes them (one folder per subject); with ``tc.cached_views`` > 1
    each clip's augmented views too. ``progress(text)``: after each subject."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ...data.shards import SubjectReader

    store = locate(out)
    net = net.to(device).eval()
    subjects = shards.subjects()
    for k, subject in enumerate(subjects):
        if progress is not None:
            progress(f"{k}/{len(subjects)} subjects")
        reader = SubjectReader(shards.clips, (subject,), CLIP_COLUMNS)
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
        if store.is_local:
            Path(store.path(f"subject={subject}")).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, store.path(f"subject={subject}", "part-0.parquet"),
                       filesystem=store.fs)


def ensure_trunk_tokens(shards: Shards, exp: ExperimentConfig, backbone: BackboneSource,
                        use_gpu: bool = False, slots: int = 1, compute: bool = True,
                        where: str = "auto") -> TokenSource | None:
    """The token folder for these shards and this configuration's trunk and views, computing
    the tokens if no finished folder exists. ``where``: "ray" (a Ray Data pass; Ray must be
    initialised), "here" (this process), or "auto" ("here" for a pass of at most
    ``HERE_MAX_FLOPS``). With ``compute=False``, None when there is no finished folder."""
    if not exp.model.trunk_frozen:
        raise ValueError("finetune='full' trains the whole backbone: there is no frozen trunk "
                         "to share")
    net = build_model(exp, len(shards.class_names), backbone)
    fingerprint = trunk_fingerprint(net)
    views_id = exp.train.views_id
    root = token_root(shards.root, fingerprint, views_id)

    def ready() -> TokenSource | None:
        where = finished(root, fingerprint, views_id, shards)
        return None if where is None else TokenSource(where, fingerprint, views_id,
                                                      made_with(backbone))

    found = ready()
    if found is not None or not compute:
        return found
    with pass_lease(root, ready) as me:
        found = ready()  # another run may have made them while this one waited or took over
        if me is None or found is not None:
            return found
        return _compute_tokens(shards, exp, net, backbone, use_gpu, slots, where,
                               locate(root).where(f"pass-{me}"))


def _compute_tokens(shards: Shards, exp: ExperimentConfig, net, backbone: BackboneSource,
                    use_gpu: bool, slots: int, where: str, pass_dir: str) -> TokenSource:
    """Encode every clip into the pass folder ``pass_dir`` (``<token folder>/pass-<id>``),
    write its marker, then publish it (the token folder's ``tokens.json``, written last).
    Runs under the pass's lease."""
    import pyarrow.parquet as pq

    from ...provenance import code_version

    start = time.perf_counter()
    out = locate(pass_dir)
    folder = locate(pass_dir.rsplit("/", 1)[0])
    if where == "auto":
        where = pass_place(shards, exp)
    views = f" and {exp.train.cached_views - 1} augmented view(s) of each" \
        if exp.train.cached_views > 1 else ""
    fingerprint, views_id = trunk_fingerprint(net), exp.train.views_id
    with Ticker(f"computing the frozen-trunk tokens of {shards.meta.clips} clips{views} "
                f"({'in this process' if where == 'here' else 'Ray Data'})") as tick:
        if where == "here":
            reuse_freed_memory()
            encode_here(shards, net, out.where(), fold_device(use_gpu), exp.train, tick.update)
        else:
            ray_pass(shards, exp, backbone, use_gpu, slots, fingerprint, out.where())
    counts = {}
    for f in out.files(suffix=".parquet"):
        subject = f.rsplit("/subject=", 1)[1].split("/", 1)[0]
        with out.fs.open_input_file(f) as fh:
            counts[subject] = counts.get(subject, 0) + pq.ParquetFile(fh).metadata.num_rows
    marker = {
        "fingerprint": fingerprint, "clips": sum(counts.values()),
        "per_subject": dict(sorted(counts.items())), "shards": str(shards.root),
        "shards_id": shards.meta.shards_id, "computed": where, "views": views_id,
        "cached_views": exp.train.cached_views, **made_with(backbone),
        "backbone": exp.model.backbone, "image_size": exp.data.size,
        "seconds": round(time.perf_counter() - start, 2), "code_version": code_version()}
    out.write_atomic(json.dumps(marker, indent=1).encode(), MARKER)
    folder.write_atomic(json.dumps({**marker, "pass": pass_dir.rsplit("/", 1)[1]},
                                   indent=1).encode(), MARKER)
    return TokenSource(out.where(), fingerprint, views_id, made_with(backbone))


def ray_pass(shards: Shards, exp: ExperimentConfig, backbone: BackboneSource, use_gpu: bool,
             slots: int, fingerprint: str, out: str) -> None:
    """The token pass as Ray Data actors holding a fold's resources, up to ``slots`` of them."""
    import ray.data

    tc = exp.train
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    clips = ray_dataset(shards.clips, shards.subjects())
    with warnings.catch_warnings():
        # max_restarts has no named parameter (yet): the remote-args hook is the way to it
        warnings.simplefilter("ignore", DeprecationWarning)
        tokens = clips.select_columns(list(CLIP_COLUMNS), num_cpus=0).map_batches(
            TrunkEncoder, batch_size=BATCH, batch_format="numpy",
            fn_constructor_kwargs={"experiment": exp.to_dict(),
                                   "num_classes": len(shards.class_names),
                                   "threads": tc.cpus_per_fold, "use_gpu": use_gpu,
                                   "backbone": backbone, "fingerprint": fingerprint,
                                   "driver": made_with(backbone)},
            num_cpus=tc.cpus_per_fold, num_gpus=tc.gpus_per_fold if use_gpu else 0,
            resources=tc.fold_resources or None,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, slots)),
            # a lost encoder fails the pass (rerun whole), never restarts half-way
            ray_remote_args_fn=lambda: {"max_restarts": 0})
    store = locate(out)
    tokens.write_parquet(store.path(), filesystem=store.fs, partition_cols=["subject"])
