"""A trained model outside LOSO: one self-contained model file.

A model file holds the whole network's weights, the experiment configuration, the class names
and the preprocessing the training shards were made with (T, S, alignment geometry), so
``mer-ray predict`` needs nothing else. ``checkpoint_from_run`` makes one from a LOSO fold: the
fold stored its best-validation weights of what trains, plus a fingerprint of the frozen rest;
the frozen rest is rebuilt exactly as training built it (same seed, same weights source) and the
fingerprint must match.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import ExperimentConfig
from ..data.prepare import PrepareConfig, prepare_config_from_dict
from ..data.shards import read_prepare_meta
from ..model import MERNet
from ..model.build import build_model, frozen_fingerprint
from ..model.encoder import RANDOM
from ..model.inputs import IMAGENET_MEAN, IMAGENET_STD
from ..provenance import code_version
from ..records import EXPERIMENT_JSON, FOLD_JSON, FOLD_WEIGHTS
from ..storage import open_storage

FORMAT = "mer-ray-model"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable model checkpoint; the message names it and says what to do."""


@dataclass
class LoadedModel:
    net: MERNet
    exp: ExperimentConfig
    class_names: list[str]
    preprocess: PrepareConfig
    meta: dict  # everything in the file but the weights


def _build_structure(exp: ExperimentConfig, num_classes: int) -> MERNet:
    """The network's structure; every weight then comes from the checkpoint."""
    return MERNet(exp.model, num_classes, exp.data.size, RANDOM)


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
    storage = open_storage(run)
    if not storage.exists(EXPERIMENT_JSON):
        raise CheckpointError(f"{storage.path()}: not a LOSO run folder (no experiment.json); "
                              f"pass the folder a loso_*.py run wrote under --storage-path")
    record = json.loads(storage.read_bytes(EXPERIMENT_JSON))
    exp = ExperimentConfig.from_dict(record["config"])
    if exp.model.method != "mer":
        raise CheckpointError(f"{storage.path()}: a run of model.method={exp.model.method}; "
                              f"model files are made for the paper's model (mer) only")
    if backbone_weights:
        exp = exp.with_values({"model.backbone_weights": str(backbone_weights)})
    class_names, pre = record.get("class_names"), record.get("preprocess")
    if class_names is None or pre is None:  # runs recorded before these fields existed
        meta = read_prepare_meta(record["shards"])
        class_names, pre = list(meta.class_names), meta.config
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
    if path.suffix == ".pt2":
        raise CheckpointError(
            f"{path}: a torch.export program, not a model checkpoint: 'mer-ray predict' reads "
            f"the .pt file 'mer-ray checkpoint' writes. Loading a .pt2 file (torch.export.load) "
            f"unpickles it and can run code: load one only from a source you trust.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own message suggests weights_only=False, which would run the file's code
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        why = "" if "weights_only" in str(exc) else f": {type(exc).__name__}: {first}"
        raise CheckpointError(
            f"{path}: not a mer-ray model checkpoint (it holds more than tensors and plain "
            f"values, or is not a torch file{why}); make one with 'mer-ray checkpoint "
            f"RUN_DIR --out {path.name}'") from None
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


