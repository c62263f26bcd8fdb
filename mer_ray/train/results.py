"""From stored fold results to the run's predictions.parquet, summary.json and printed table."""

from __future__ import annotations

import json
import time

import polars as pl

from ..console import show
from ..data.adapters.megc import source_dataset
from ..metrics import bootstrap_interval, loso_scores, scores
from ..provenance import code_version, provenance
from ..records import FoldRecord, fold_done, read_result
from .loso import LosoSetup


def collect(setup: LosoSetup) -> tuple[pl.DataFrame, list[FoldRecord]]:
    rows, folds = [], []
    names = setup.class_names
    for f in setup.folds:
        where = f"{setup.name}/folds/{f.test}"
        if not fold_done(setup.storage, where):
            raise RuntimeError(f"fold {f.test} has no results in {setup.storage.path(where)}")
        fold, preds = read_result(setup.storage, where)
        folds.append(fold)
        for key, y, p in zip(preds.keys, preds.labels, preds.probs):
            subject, clip = key.split("/", 1)
            pred = max(range(len(p)), key=p.__getitem__)
            rows.append({"fold": f.test, "subject": subject, "clip": clip, "label": y,
                         "label_name": names[y], "prediction": pred,
                         "prediction_name": names[pred], "probabilities": p})
    return pl.DataFrame(rows), folds


def subject_predictions(storage, name: str) -> dict[str, tuple[list[int], list[int]]]:
    """A stored run's (true labels, predicted labels) per test subject."""
    import io

    preds = pl.read_parquet(io.BytesIO(storage.read_bytes(name, "predictions.parquet")))
    return {s: (g["label"].to_list(), g["prediction"].to_list())
            for (s,), g in preds.group_by("subject", maintain_order=True)}


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


def summarise(setup: LosoSetup, extra: dict | None = None) -> dict:
    preds, folds = collect(setup)
    classes = list(range(len(setup.class_names)))
    per_fold = [(preds.filter(pl.col("fold") == f.test_subject)["label"].to_list(),
                 preds.filter(pl.col("fold") == f.test_subject)["prediction"].to_list())
                for f in folds]
    m = loso_scores(per_fold, classes)
    by_subject = {s: (g["label"].to_list(), g["prediction"].to_list())
                  for (s,), g in preds.group_by("subject", maintain_order=True)} \
        if preds.height else {}
    ci = bootstrap_interval(by_subject, classes, seed=setup.exp.train.seed) if by_subject \
        else None
    pretrained = sorted({f.pretrained for f in folds})
    cache = setup.exp.train.cache_trunk
    summary = {
        "name": setup.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": setup.data_meta.get("dataset"),
        "protocol": setup.data_meta.get("protocol"),
        "synthetic": bool(setup.data_meta.get("synthetic")),
        "class_names": setup.class_names,
        "n_folds": len(folds),
        "n_clips": preds.height,
        "metrics": {
            "primary": "aggregate: UF1/UAR over all folds' predictions concatenated",
            "uf1": m["aggregate"]["uf1"], "uar": m["aggregate"]["uar"],
            # 95 % percentile bootstrap over test subjects of the aggregate figures
            "uf1_ci95": ci["uf1"] if ci else None, "uar_ci95": ci["uar"] if ci else None,
            "bootstrap": {k: ci[k] for k in ("resamples", "seed", "unit", "level")}
            if ci else None,
            "per_fold_mean_uf1": m["per_fold_mean"]["uf1"],
            "per_fold_mean_uar": m["per_fold_mean"]["uar"],
            "per_class_recall": {setup.class_names[int(c)]: r
                                 for c, r in m["aggregate"]["recall"].items()},
            "per_class_f1": {setup.class_names[int(c)]: v
                             for c, v in m["aggregate"]["f1"].items()},
            "confusion_matrix": m["aggregate"]["confusion"],
            "confusion_axes": "rows: true class, columns: predicted class, class_names order",
            "classes_absent": [setup.class_names[c] for c in m["aggregate"]["absent"]],
            **({"per_dataset": per_dataset_scores(preds, len(classes))}
               if setup.data_meta.get("dataset") == "megc" else {}),
        },
        "folds": [{"test_subject": f.test_subject, "val_subjects": f.val_subjects,
                   "uf1": pf["uf1"], "uar": pf["uar"], "n": pf["n"],
                   "classes_absent": [setup.class_names[c] for c in pf["absent"]],
                   "best_epoch": f.best_epoch, "epochs_run": f.epochs_run,
                   "best_val_uf1": f.best_val_uf1, "worker_seconds": f.seconds,
                   "wall_seconds": f.wall_seconds, "node_ip": f.node_ip,
                   "node_id": f.node_id, "device": f.device, "timing": f.timing}
                  for f, pf in zip(folds, m["per_fold"])],
        "config": setup.exp.to_dict(),
        "config_hash": setup.exp.hash(),
        "seed": setup.exp.train.seed,
        "code_version": code_version(),
        "provenance": provenance(setup.exp.model.backbone_weights, [f.device for f in folds]),
        "pretrained": pretrained[0] if len(pretrained) == 1 else pretrained,
        "weights_source": folds[0].weights_source if folds else None,
        "augmentation": "none: trained from cached frozen-trunk tokens" if cache else
                        ("flip + affine on training clips" if setup.exp.train.augment else "none"),
        "control_shuffled_labels": setup.exp.train.shuffle_labels,
        # True when the configuration was chosen by a search that saw these test subjects
        "search_informed": False,
        "shards": setup.shards,
        "data": {k: setup.data_meta.get(k) for k in ("root", "config", "clips", "per_class")},
        **(extra or {}),
    }
    setup.storage.write_parquet(preds, setup.name, "predictions.parquet")
    setup.storage.write_atomic(json.dumps(summary, indent=1).encode(), setup.name,
                               "summary.json")
    return summary


def _interval(ci) -> str:
    return f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "-"


def print_summary(summary: dict, where: str) -> None:
    m = summary["metrics"]
    rows = [(f["test_subject"], f["n"], f"{f['uf1']:.3f}", f"{f['uar']:.3f}",
             f"{f['best_val_uf1']:.3f}", f["best_epoch"], f"{f['worker_seconds']:.0f}")
            for f in summary["folds"]]
    show(["test subject", "clips", "UF1", "UAR", "best val UF1", "best epoch", "seconds"], rows,
         title=f"{summary['name']}: per fold")
    flags = []
    if summary["synthetic"]:
        flags.append("SYNTHETIC data")
    if not summary["pretrained"]:
        flags.append("backbone NOT pretrained")
    if summary["control_shuffled_labels"]:
        flags.append("CONTROL: training labels shuffled")
    if summary.get("search_informed"):
        flags.append("SEARCH-INFORMED: its test subjects helped choose the configuration, "
                     "report the nested figure instead")
    if summary.get("nested"):
        flags.append("nested search: each fold's configuration chosen without its subject")
    show(["figure", "UF1", "UAR"],
         [("all folds' predictions (primary)", f"{m['uf1']:.4f}", f"{m['uar']:.4f}"),
          ("  95 % interval (bootstrap over test subjects)", _interval(m.get("uf1_ci95")),
           _interval(m.get("uar_ci95"))),
          ("mean over folds", f"{m['per_fold_mean_uf1']:.4f}",
           f"{m['per_fold_mean_uar']:.4f}")],
         title=f"LOSO, {summary['n_folds']} folds, {summary['n_clips']} test clips"
               + (f" [{'; '.join(flags)}]" if flags else ""))
    if m.get("per_dataset"):
        show(["source dataset", "subjects", "clips", "UF1", "UAR"],
             [(ds, d["n_subjects"], d["n_clips"], f"{d['uf1']:.4f}", f"{d['uar']:.4f}")
              for ds, d in m["per_dataset"].items()],
             title="composite: each dataset's part of the predictions (MEGC convention)")
    if m["classes_absent"]:
        print(f"classes absent from truth and predictions (left out of the means): "
              f"{', '.join(m['classes_absent'])}")
    print(f"results: {where}")
