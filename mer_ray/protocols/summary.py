"""From stored fold results to a run's predictions.parquet, summary.json and printed table."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import polars as pl

from ..config import ExperimentConfig
from ..console import show
from ..data.adapters.megc import source_dataset
from ..data.folds import FOLDS_FILE
from ..data.labels import is_multilabel
from ..data.shards import ShardMeta
from ..integrity import LEAKY_SELECTION, is_leaky
from ..methods import method_of
from ..metrics import bootstrap_interval, loso_scores, scores
from ..provenance import code_version, provenance
from ..records import FoldRecord
from ..storage import Storage
from ..train.folder import RunFolder


@dataclass(frozen=True)
class RunView:
    """What a summary needs of a run: its folder, configuration, classes, the keys of its
    folds (in order) and the data it tested on."""

    folder: RunFolder
    exp: ExperimentConfig
    class_names: tuple[str, ...]
    fold_keys: tuple[str, ...]
    shards: str  # the shard folder it tested on
    data: ShardMeta
    synthetic: bool = False  # anything it trained or tested on was synthetic


def collect(run: RunView) -> tuple[pl.DataFrame, list[FoldRecord]]:
    """Every fold's test predictions, one row per clip: label and prediction are class
    indices, or under a multi-label protocol AU masks (an AU predicted at probability
    > 0.5), with their names."""
    from ..au_metrics import decide
    from ..data.aus import mask_name

    rows, folds = [], []
    names = run.class_names
    multi = is_multilabel(run.data.protocol)
    name = (lambda v: mask_name(v, names)) if multi else names.__getitem__
    for key in run.fold_keys:
        if not run.folder.fold_done(key):
            raise RuntimeError(f"fold {key} has no results in "
                               f"{run.folder.storage.path(run.folder.fold_dir(key))}")
        fold, preds = run.folder.read_fold(key)
        folds.append(fold)
        decided = decide(preds.probs) if multi else None
        for i, (clip_key, y, p) in enumerate(zip(preds.keys, preds.labels, preds.probs)):
            subject, clip = clip_key.split("/", 1)
            pred = decided[i] if multi else max(range(len(p)), key=p.__getitem__)
            rows.append({"fold": key, "subject": subject, "clip": clip, "label": y,
                         "label_name": name(y), "prediction": pred,
                         "prediction_name": name(pred), "probabilities": p})
    return pl.DataFrame(rows), folds


def by_subject(preds: pl.DataFrame) -> dict[str, tuple[list[int], list[int]]]:
    """Predictions (``collect``'s columns) as (true labels, predicted labels) per test subject:
    what the bootstrap intervals and paired differences resample."""
    return {s: (g["label"].to_list(), g["prediction"].to_list())
            for (s,), g in preds.group_by("subject", maintain_order=True)}


def subject_predictions(storage, name: str) -> dict[str, tuple[list[int], list[int]]]:
    """A stored run's (true labels, predicted labels) per test subject."""
    import io

    return by_subject(pl.read_parquet(io.BytesIO(storage.read_bytes(name,
                                                                     "predictions.parquet"))))


def per_dataset_scores(preds: pl.DataFrame, n_classes: int) -> dict[str, dict]:
    """UF1/UAR over each source dataset's part of a composite run's predictions (the MEGC
    convention: all predictions, then each dataset's), keyed by dataset; {} when the subjects
    do not carry a source dataset."""
    if preds.is_empty():
        return {}
    sources = [source_dataset(s) for s in preds["subject"].to_list()]
    if None in sources:
        return {}
    out = {}
    for ds in sorted(set(sources)):
        part = preds.filter(pl.Series(sources) == ds)
        sc = scores(part["label"].to_list(), part["prediction"].to_list(), list(range(n_classes)))
        out[ds] = {"uf1": sc.uf1, "uar": sc.uar, "n_clips": sc.n,
                   "n_subjects": part["subject"].n_unique()}
    return out


def run_metrics(preds: pl.DataFrame, folds: list[str], names: tuple[str, ...],
                seed: int, composite: bool, multilabel: bool = False) -> dict:
    """The run's figures: aggregate (primary) and per-fold mean, with intervals. ``folds``:
    each fold's key (its test subject), in order. A run's own predictions and a scored file
    (``scoring.py``) are scored here alike. ``multilabel``: a CD6ME run's AU figures
    (``au_summary.py``)."""
    subjects = by_subject(preds) if preds.height else {}
    if multilabel:
        from .au_summary import au_run_metrics

        return au_run_metrics(preds, folds, names, seed, subjects)
    classes = list(range(len(names)))
    parts = [preds.filter(pl.col("fold") == f) for f in folds]
    m = loso_scores([(p["label"].to_list(), p["prediction"].to_list()) for p in parts],
                    classes)
    ci = bootstrap_interval(subjects, classes, seed=seed) if subjects else None
    agg = m["aggregate"]
    return {
        "primary": "aggregate: UF1/UAR over all folds' predictions concatenated",
        "uf1": agg["uf1"], "uar": agg["uar"],
        # 95 % percentile bootstrap over test subjects of the aggregate figures
        "uf1_ci95": ci["uf1"] if ci else None, "uar_ci95": ci["uar"] if ci else None,
        "bootstrap": {k: ci[k] for k in ("resamples", "seed", "unit", "level")} if ci else None,
        "per_fold_mean_uf1": m["per_fold_mean"]["uf1"],
        "per_fold_mean_uar": m["per_fold_mean"]["uar"],
        "per_class_recall": {names[int(c)]: r for c, r in agg["recall"].items()},
        "per_class_f1": {names[int(c)]: v for c, v in agg["f1"].items()},
        "confusion_matrix": agg["confusion"],
        "confusion_axes": "rows: true class, columns: predicted class, class_names order",
        "classes_absent": [names[c] for c in agg["absent"]],
        **({"per_dataset": per_dataset_scores(preds, len(classes))} if composite else {}),
        "_per_fold": m["per_fold"],
    }


def _fold_rows(folds: list[FoldRecord], per_fold: list[dict], names) -> list[dict]:
    return [{"test_subject": f.test_subject, "val_subjects": f.val_subjects,
             "uf1": pf["uf1"], "uar": pf["uar"], "n": pf["n"],
             "classes_absent": [names[c] for c in pf["absent"]],
             "best_epoch": f.best_epoch, "epochs_run": f.epochs_run,
             "best_val_uf1": f.best_val_uf1, "worker_seconds": f.seconds,
             "wall_seconds": f.wall_seconds, "node_ip": f.node_ip, "node_id": f.node_id,
             "device": f.device, "threads": f.threads, "timing": f.timing}
            for f, pf in zip(folds, per_fold)]


def scored_fold_rows(subjects: list[str], per_fold: list[dict], names) -> list[dict]:
    """Per-fold rows of a scored predictions file: its figures, none of training's records."""
    return [{"test_subject": s, "val_subjects": None, "uf1": pf["uf1"], "uar": pf["uar"],
             "n": pf["n"], "classes_absent": [names[c] for c in pf["absent"]],
             "best_epoch": None, "epochs_run": None, "best_val_uf1": None,
             "worker_seconds": None, "wall_seconds": None}
            for s, pf in zip(subjects, per_fold)]


def summarise_run(run: RunView, extra: dict | None = None) -> dict:
    """Write the run's predictions.parquet and summary.json from its stored folds; returns
    the summary."""
    preds, folds = collect(run)
    exp, meta = run.exp, run.data
    multi = is_multilabel(meta.protocol)
    metrics = run_metrics(preds, [f.test_subject for f in folds], run.class_names,
                          exp.train.seed, meta.dataset == "megc", multi)
    per_fold = metrics.pop("_per_fold")
    if multi:
        from .au_summary import au_fold_rows

        fold_rows = au_fold_rows(folds, per_fold)
    else:
        fold_rows = _fold_rows(folds, per_fold, run.class_names)
    pretrained = sorted({f.pretrained for f in folds})
    has_backbone = method_of(exp).uses_backbone
    backbone = {"source": folds[0].weights_source, "sha256": folds[0].weights_sha256} \
        if folds else None
    folds_file = run.folder.rel(FOLDS_FILE)
    folds_hash = run.folder.read_json(folds_file)["hash"] if run.folder.exists(folds_file) \
        else None
    summary = {
        "name": run.folder.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": meta.dataset, "protocol": meta.protocol,
        "synthetic": bool(meta.synthetic or run.synthetic),
        "class_names": list(run.class_names), "n_folds": len(folds), "n_clips": preds.height,
        "metrics": metrics, "folds": fold_rows,
        "config": exp.to_dict(), "config_hash": exp.hash(), "seed": exp.train.seed,
        "code_version": code_version(),
        "provenance": provenance(backbone, [f.device for f in folds],
                                 [f.libraries for f in folds]),
        "method": exp.model.method, "selection": exp.train.selection,
        **({"leaky": LEAKY_SELECTION} if is_leaky(exp) else {}),
        # None: the method has no backbone to be pretrained
        "pretrained": (pretrained[0] if len(pretrained) == 1 else pretrained)
        if has_backbone else None,
        "weights_source": folds[0].weights_source if folds else None,
        "augmentation": method_of(exp).augmentation(exp),
        "control_shuffled_labels": exp.train.shuffle_labels,
        # True when the configuration was chosen by a search that saw these test subjects
        "search_informed": False,
        "shards": run.shards,
        # the folds' own file and its hash (data/folds.py fold_file): the same on any machine
        "folds_file": FOLDS_FILE if folds_hash else None, "folds_hash": folds_hash,
        "data": {"root": meta.root, "config": meta.config, "clips": meta.clips,
                 "per_class": meta.per_class},
        **(extra or {}),
    }
    storage = run.folder.storage
    storage.write_parquet(preds, run.folder.name, "predictions.parquet")
    run.folder.write_json(summary, run.folder.rel("summary.json"))
    return summary


def _interval(ci) -> str:
    return f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "-"


def summary_flags(summary: dict) -> list[str]:
    """What a run's printed figures are marked with (synthetic, leaky, control, ...)."""
    flags = []
    if summary["synthetic"]:
        flags.append("SYNTHETIC data")
    if summary.get("pretrained") is False:
        flags.append("backbone NOT pretrained")
    if summary.get("scored"):
        flags.append(f"SCORED FILE: selection declared {summary['selection']!r}")
    if summary.get("leaky"):
        flags.append("LEAKY: each fold's epoch chosen on its test subject")
    if summary.get("selection_unknown"):
        flags.append("SELECTION UNDECLARED: never ranked with honest runs")
    if summary["control_shuffled_labels"]:
        flags.append("CONTROL: training labels shuffled")
    if summary.get("search_informed"):
        flags.append("SEARCH-INFORMED: its test subjects helped choose the configuration, "
                     "report the nested figure instead")
    if summary.get("nested"):
        flags.append("nested search: each fold's configuration chosen without its subject")
    partial = summary.get("partial")
    if partial:
        flags.append(f"PARTIAL: {partial['folds']} of {partial['of']} folds (--max-folds)")
    return flags


def print_summary(summary: dict, where: str) -> None:
    from .au_summary import holds_au_figures, print_au_summary

    m = summary["metrics"]
    flags, partial = summary_flags(summary), summary.get("partial")
    if holds_au_figures(summary):
        return print_au_summary(summary, flags, where)

    def fmt(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    rows = [(f["test_subject"], f["n"], f"{f['uf1']:.3f}", f"{f['uar']:.3f}",
             fmt(f["best_val_uf1"], ".3f"), fmt(f["best_epoch"], ""),
             fmt(f["worker_seconds"], ".0f"))
            for f in summary["folds"]]
    show(["test subject", "clips", "UF1", "UAR", "best val UF1", "best epoch", "seconds"], rows,
         title=f"{summary['name']}: per fold")
    show(["figure", "UF1", "UAR"],
         [("all folds' predictions (primary)", f"{m['uf1']:.4f}", f"{m['uar']:.4f}"),
          ("  95 % interval (bootstrap over test subjects)", _interval(m.get("uf1_ci95")),
           _interval(m.get("uar_ci95"))),
          ("mean over folds", f"{m['per_fold_mean_uf1']:.4f}",
           f"{m['per_fold_mean_uar']:.4f}")],
         title=f"LOSO, {summary['n_folds']}"
               + (f" of {partial['of']}" if partial else "")
               + f" folds, {summary['n_clips']} test clips"
               + (f" [{'; '.join(flags)}]" if flags else ""))
    if m.get("per_dataset"):
        show(["source dataset", "subjects", "clips", "UF1", "UAR"],
             [(ds, d["n_subjects"], d["n_clips"], f"{d['uf1']:.4f}", f"{d['uar']:.4f}")
              for ds, d in m["per_dataset"].items()],
             title="composite: each dataset's part of the predictions (MEGC convention)")
    if m["classes_absent"]:
        print(f"classes absent from truth and predictions (left out of the means): "
              f"{', '.join(m['classes_absent'])}")
    if summary.get("folds_hash"):
        print(f"folds: {summary['folds_file']} in the run's folder (hash {summary['folds_hash']}: "
              f"the same folds and clips give the same hash anywhere)")
    print(f"results: {where}")


def write_grid_file(storage: Storage, file: str, kind: str, title: str, rows: list[dict],
                    **extra) -> None:
    """The one layout of a file over several runs (a grid, a comparison, a transfer, a run's
    training seeds): ``{"grid": kind, "title": ..., <extra>, "rows": [one dict per row]}``,
    written whole to ``file`` in the results storage; the report reads every kind the same
    way."""
    storage.write_atomic(json.dumps({"grid": kind, "title": title, **extra, "rows": rows},
                                    indent=1, default=str).encode(), file)
