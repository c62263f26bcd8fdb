"""A trained model outside LOSO: one self-contained checkpoint file, prediction on a recording,
and an exported artefact that runs without this package.

A model checkpoint holds the whole network's weights, the experiment configuration, the class
names and the preprocessing the training shards were made with (T, S, alignment geometry), so
``mer-ray predict`` needs nothing else. ``checkpoint_from_run`` makes one from a LOSO fold: the
fold stored its best-validation weights of what trains, plus a fingerprint of the frozen rest; the
frozen rest is rebuilt exactly as training built it (same seed, same weights source) and the
fingerprint must match.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .data.align import NoFaceError
from .data.frames import index_frames
from .data.prepare import PrepareConfig, prepare_config_from_dict, sample_and_align
from .model import MERNet
from .model.inputs import IMAGENET_MEAN, IMAGENET_STD, clips_to_tensor
from .provenance import code_version
from .train.config import ExperimentConfig

FORMAT = "mer-ray-model"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable model checkpoint; the message names it and says what to do."""


class InputError(ValueError):
    """A recording that cannot be predicted on; the message names it."""


@dataclass
class LoadedModel:
    net: MERNet
    exp: ExperimentConfig
    class_names: list[str]
    preprocess: PrepareConfig
    meta: dict  # everything in the file but the weights


def _build_structure(exp: ExperimentConfig, num_classes: int) -> MERNet:
    import logging

    cfg = replace(exp.model, pretrained=False, backbone_weights=None)
    logger = logging.getLogger("mer_ray.model.encoder")
    was, logger.disabled = logger.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return MERNet(cfg, num_classes)
    finally:
        logger.disabled = was


def make_checkpoint(net: MERNet, exp: ExperimentConfig, class_names: list[str],
                    preprocess: PrepareConfig, source: dict) -> dict:
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "code_version": code_version(),
        "experiment": exp.to_dict(), "config_hash": exp.hash(),
        "class_names": list(class_names), "preprocess": asdict(preprocess),
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "pretrained": bool(net.pretrained), "weights_source": net.encoder.weights_source,
        "source": source,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }


def save_checkpoint(ckpt: dict, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(out)
    return out


def checkpoint_from_run(run: str, fold: str | None = None,
                        backbone_weights: str | None = None) -> dict:
    """A model checkpoint from a LOSO run folder (or URI) and one of its folds.

    Without ``fold`` the fold with the best *validation* UF1 is taken (its test score plays no
    part). ``backbone_weights`` points at the backbone file when it has moved since training.
    """
    from .data.shards import read_prepare_meta
    from .storage import open_storage
    from .train.build import build_model, frozen_fingerprint
    from .train.job import FOLD_JSON, FOLD_WEIGHTS

    storage = open_storage(run)
    if not storage.exists("experiment.json"):
        raise CheckpointError(f"{storage.path()}: not a LOSO run folder (no experiment.json); "
                              f"pass the folder a loso_*.py run wrote under --storage-path")
    record = json.loads(storage.read_bytes("experiment.json"))
    exp = ExperimentConfig.from_dict(record["config"])
    if backbone_weights:
        exp = exp.with_values({"model.backbone_weights": str(backbone_weights)})
    class_names, pre = record.get("class_names"), record.get("preprocess")
    if class_names is None or pre is None:  # runs recorded before these fields existed
        meta = read_prepare_meta(record["shards"])
        class_names, pre = meta["class_names"], meta["config"]
    folds = {}
    for s in storage.listdir("folds"):
        if storage.exists("folds", s, FOLD_JSON) and storage.exists("folds", s, FOLD_WEIGHTS):
            folds[s] = json.loads(storage.read_bytes("folds", s, FOLD_JSON))
    if not folds:
        raise CheckpointError(f"{storage.path('folds')}: no finished fold with stored weights "
                              f"(runs made before weights were stored cannot be converted)")
    chosen_by = "given"
    if fold is None:
        fold = max(sorted(folds), key=lambda s: folds[s]["best_val_uf1"])
        chosen_by = "best validation UF1 among the run's folds"
    elif fold not in folds:
        raise CheckpointError(f"{storage.path()}: no finished fold for test subject {fold!r}; "
                              f"folds with weights: {', '.join(sorted(folds))}")
    blob = torch.load(io.BytesIO(storage.read_bytes("folds", fold, FOLD_WEIGHTS)),
                      map_location="cpu", weights_only=True)
    net = build_model(exp, len(class_names))
    if frozen_fingerprint(net) != blob["frozen_fingerprint"]:
        raise CheckpointError(
            f"{storage.path('folds', fold)}: the frozen backbone built here differs from the one "
            f"this fold trained with (weights source here: {net.encoder.weights_source}; fold: "
            f"{folds[fold].get('weights_source')}). Pass --backbone-weights with the file the "
            f"run used, or make the checkpoint where the run was trained.")
    res = net.load_state_dict(blob["state"], strict=False)
    if res.unexpected_keys:
        raise CheckpointError(f"{storage.path('folds', fold, FOLD_WEIGHTS)}: weights this "
                              f"version's network does not have: {res.unexpected_keys[:5]}")
    source = {"run": storage.uri, "run_name": record.get("name"), "fold": fold,
              "best_val_uf1": folds[fold]["best_val_uf1"],
              "val_subjects": folds[fold]["val_subjects"],
              "train_subjects": folds[fold]["train_subjects"],
              "dataset": record.get("dataset"), "protocol": record.get("protocol"),
              "synthetic": record.get("synthetic"),
              "chosen_by": chosen_by}
    return make_checkpoint(net, exp, class_names, prepare_config_from_dict(pre), source)


def load_checkpoint(path: str | Path) -> LoadedModel:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found; make one with "
                              f"'mer-ray checkpoint RUN_DIR --out {path.name}'")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a mer-ray model checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a mer-ray model checkpoint (a LOSO run's fold "
                              f"checkpoint is converted with 'mer-ray checkpoint RUN_DIR')")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written in checkpoint format {data.get('format_version')} by mer-ray "
            f"{data.get('code_version')}; this mer-ray ({code_version()}) reads format "
            f"{FORMAT_VERSION}. Use the mer-ray version that wrote it, or re-create the "
            f"checkpoint from its run with this version.")
    try:
        exp = ExperimentConfig.from_dict(data["experiment"])
        pre = prepare_config_from_dict(data["preprocess"])
        net = _build_structure(exp, len(data["class_names"]))
        net.load_state_dict(data["state_dict"], strict=True)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: does not fit this mer-ray ({code_version()}; the file is from "
            f"{data.get('code_version')}): {str(exc).splitlines()[0][:300]}") from None
    net.encoder.pretrained = bool(data["pretrained"])
    net.encoder.weights_source = data["weights_source"]
    net.eval()
    meta = {k: v for k, v in data.items() if k != "state_dict"}
    return LoadedModel(net, exp, list(data["class_names"]), pre, meta)


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


class ExportedMER(torch.nn.Module):
    """What ``mer-ray export`` writes: aligned uint8 frames (B, T, S, S, 3) in, a dict of
    probabilities, logits and the explanatory outputs out. Normalisation is inside."""

    def __init__(self, net: MERNet):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1))

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (frames.permute(0, 1, 4, 2, 3).float() / 255.0 - self.mean) / self.std
        out = self.net(x)
        keep = ("logits", "w", "alpha_low", "alpha_high", "attention", "kernel_weights")
        res = {k: out[k] for k in keep if k in out}
        res["probabilities"] = torch.softmax(out["logits"], dim=-1)
        return res


def export_model(model: LoadedModel, out: str | Path, batch_max: int = 256,
                 seed: int = 0) -> dict:
    """torch.export the whole model to a .pt2 file with its metadata; the file is loaded back
    and checked against the model on random frames. Returns the check's figures."""
    from torch.export import Dim

    out = Path(out)
    wrapper = ExportedMER(model.net).eval()
    t, s = model.preprocess.frames, model.preprocess.size
    g = torch.Generator().manual_seed(seed)
    example = torch.randint(0, 256, (2, t, s, s, 3), dtype=torch.uint8, generator=g)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # nn.LSTM re-assigns its flat weight list while being traced; the values are exported
        warnings.filterwarnings("ignore", message=".*_flat_weights.*")
        ep = torch.export.export(
            wrapper, (example,),
            dynamic_shapes={"frames": {0: Dim("batch", min=1, max=batch_max)}})
    meta = {k: model.meta[k] for k in ("code_version", "config_hash", "class_names",
                                        "preprocess", "normalisation", "pretrained",
                                        "weights_source", "source", "experiment")}
    meta["input"] = (f"uint8 aligned frames (B, {t}, {s}, {s}, 3), RGB, faces aligned by eye "
                     f"centres as in 'preprocess'; B from 1 to {batch_max}")
    meta["outputs"] = sorted(wrapper(example[:1]).keys())
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(ep, str(out), extra_files={"mer_ray.json": json.dumps(meta)})
    seconds = time.perf_counter() - t0
    loaded = torch.export.load(str(out)).module()
    check = torch.randint(0, 256, (3, t, s, s, 3), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        want, got = wrapper(check), loaded(check)
    diff = max(float((want[k] - got[k]).abs().max()) for k in want)
    if diff > 1e-4:
        raise RuntimeError(f"{out}: the exported model's outputs differ from the model's by "
                           f"{diff:.2e}")
    return {"out": str(out), "seconds": round(seconds, 2), "max_abs_diff": diff,
            "outputs": meta["outputs"], "bytes": out.stat().st_size}


def load_exported(path: str | Path):
    """(module, metadata) of an exported model; needs torch only."""
    extra = {"mer_ray.json": ""}
    ep = torch.export.load(str(path), extra_files=extra)
    return ep.module(), json.loads(extra["mer_ray.json"])

