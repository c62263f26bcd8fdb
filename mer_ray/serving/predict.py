"""Prediction on a recording: T frames sampled over a span and aligned exactly as the training
shards were made, then the model file's network."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..data.align import NoFaceError
from ..data.frames import index_frames
from ..data.prepare import PrepareConfig, sample_and_align
from ..model.inputs import clips_to_tensor
from .modelfile import LoadedModel


class InputError(ValueError):
    """A recording that cannot be predicted on; the message names it."""


def read_aligned_clip(source: str | Path, pre: PrepareConfig, onset: int | None = None,
                      offset: int | None = None) -> dict:
    """The T aligned frames of ``source`` (a video or a folder of frames) between frame numbers
    ``onset`` and ``offset`` (inclusive; default the whole input), exactly as the training shards
    were made."""
    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    index = index_frames(source)  # FrameError names the file
    if len(index) == 0:
        raise InputError(f"{source}: holds no readable frames (a folder needs image files "
                         f"with a frame number in their names; a video needs frames)")
    first, last = index.numbers[0], index.numbers[-1]
    lo = first if onset is None else onset
    hi = last if offset is None else offset
    if lo > hi:
        raise InputError(f"{source}: onset {lo} is after offset {hi}")
    if lo < first or hi > last:
        raise InputError(f"{source}: span {lo}..{hi} is outside the frames it holds "
                         f"({first}..{last}); give --onset/--offset within them")
    span = index.span(lo, hi)
    if not span:
        raise InputError(f"{source}: no frames numbered {lo}..{hi}")
    try:
        frames, numbers, found = sample_and_align(index, span, pre)
    except NoFaceError as exc:
        raise InputError(f"{source}: {exc}; is there a frontal face in the recording?") from None
    return {"frames": frames, "frame_numbers": numbers.tolist(), "face_found": found.tolist(),
            "span": [int(lo), int(hi)]}


def predict_clip(model: LoadedModel, source: str | Path, onset: int | None = None,
                 offset: int | None = None) -> tuple[dict, dict]:
    """(result for printing and JSON, the aligned clip)."""
    t0 = time.perf_counter()
    clip = read_aligned_clip(source, model.preprocess, onset, offset)
    t1 = time.perf_counter()
    with torch.no_grad():
        out = model.net(clips_to_tensor(clip["frames"][None]))
    probs = torch.softmax(out["logits"].float(), -1)[0].numpy()
    t2 = time.perf_counter()
    k = int(probs.argmax())
    result = {
        "input": str(source), "label": model.class_names[k], "label_id": k,
        "probabilities": {n: float(p) for n, p in zip(model.class_names, probs)},
        "span": clip["span"], "frame_numbers": clip["frame_numbers"],
        "face_found": clip["face_found"],
        "seconds": {"read_and_align": round(t1 - t0, 4), "model": round(t2 - t1, 4)},
        "model": {"pretrained": model.meta["pretrained"],
                  "weights_source": model.meta["weights_source"],
                  "code_version": model.meta["code_version"],
                  "config_hash": model.meta["config_hash"], "source": model.meta["source"]},
    }
    if not all(clip["face_found"]):
        missing = sum(not f for f in clip["face_found"])
        result["warning"] = (f"{missing} of {len(clip['face_found'])} sampled frames had no "
                             f"face; they reuse the nearest frame's alignment")
    return result, clip


