"""A CD6ME run's figures (multi-label action-unit detection, ``au_metrics.py``): what
``summary.py`` writes and prints for a run whose protocol is multi-label.

The primary figure is the mean AU F1 over all folds' predictions pooled (every held-out
dataset's clips together); beside it, the figures of each held-out dataset (each fold's clips)
and their mean ("mean over folds"), each AU's F1, its positives in the truth and in the
predictions. Intervals: percentile bootstrap over test subjects.
"""

from __future__ import annotations

import polars as pl

from ..au_metrics import au_interval, au_scores
from ..console import show

PRIMARY = "pooled: mean AU F1 over all folds' predictions concatenated"


TASK = "action units"  # a summary's metrics["task"] when they are AU figures


def holds_au_figures(summary: dict) -> bool:
    """Whether a run's (or scored file's) summary holds AU figures (a CD6ME run)."""
    return (summary.get("metrics") or {}).get("task") == TASK


def au_run_metrics(preds: pl.DataFrame, folds: list[str], names: tuple[str, ...],
                   seed: int, subjects: dict) -> dict:
    """The run's figures (above); ``folds``: each fold's key (a held-out dataset), in order;
    ``subjects``: the predictions per test subject (``summary.by_subject``)."""
    pooled = au_scores(preds["label"].to_list(), preds["prediction"].to_list(), names)
    per_fold = []
    for f in folds:
        part = preds.filter(pl.col("fold") == f)
        sc = au_scores(part["label"].to_list(), part["prediction"].to_list(), names)
        per_fold.append({"fold": f, "mean_au_f1": sc["mean_f1"], "per_au_f1": sc["per_au"],
                         "n": sc["n"], "n_subjects": part["subject"].n_unique(),
                         "aus_absent": sc["absent"]})
    ci = au_interval(subjects, len(names), seed=seed) if subjects else None
    means = [p["mean_au_f1"] for p in per_fold]
    return {
        "task": TASK, "primary": PRIMARY,
        "mean_au_f1": pooled["mean_f1"],
        "mean_au_f1_ci95": ci["mean_f1"] if ci else None,
        "bootstrap": {k: ci[k] for k in ("resamples", "seed", "unit", "level")} if ci else None,
        "per_fold_mean_au_f1": sum(means) / len(means) if means else None,
        "per_au_f1": pooled["per_au"], "positives": pooled["positives"],
        "predicted_positives": pooled["predicted"], "aus_absent": pooled["absent"],
        "threshold": "an AU is predicted present at probability > 0.5",
        "undefined_f1": "an AU neither present nor predicted in the clips scored counts as "
                        "F1 0 (as MEB counts it)",
        "per_dataset": {p["fold"]: {k: p[k] for k in ("mean_au_f1", "per_au_f1", "n",
                                                       "n_subjects", "aus_absent")}
                        for p in per_fold},
        "_per_fold": per_fold,
    }


def au_fold_rows(folds: list, per_fold: list[dict]) -> list[dict]:
    """summary.json's per-fold rows of a CD6ME run (``folds``: its FoldRecords)."""
    return [{"test_subject": f.test_subject, "held_out_dataset": f.test_subject,
             "val_subjects": f.val_subjects, "mean_au_f1": pf["mean_au_f1"], "n": pf["n"],
             "n_subjects": pf["n_subjects"], "aus_absent": pf["aus_absent"],
             "best_epoch": f.best_epoch, "epochs_run": f.epochs_run,
             "best_val_au_f1": f.best_val_uf1, "worker_seconds": f.seconds,
             "wall_seconds": f.wall_seconds, "node_ip": f.node_ip, "node_id": f.node_id,
             "device": f.device, "threads": f.threads, "timing": f.timing}
            for f, pf in zip(folds, per_fold)]


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def print_au_summary(summary: dict, flags: list[str], where: str) -> None:
    m = summary["metrics"]
    show(["held-out dataset", "subjects", "clips", "mean AU F1 %", "best val AU F1 %",
          "best epoch", "seconds"],
         [(f["held_out_dataset"], f["n_subjects"], f["n"], _pct(f["mean_au_f1"]),
           _pct(f["best_val_au_f1"]) if (f["best_val_au_f1"] or -1) >= 0 else "-",
           f["best_epoch"], "-" if f["worker_seconds"] is None else f"{f['worker_seconds']:.0f}")
          for f in summary["folds"]],
         title=f"{summary['name']}: leave one dataset out (CD6ME), per held-out dataset")
    ci = m.get("mean_au_f1_ci95")
    show(["figure", "mean AU F1 %"],
         [("all folds' predictions pooled (primary)", _pct(m["mean_au_f1"])),
          ("  95 % interval (bootstrap over test subjects)",
           f"{_pct(ci[0])}-{_pct(ci[1])}" if ci else "-"),
          ("mean over held-out datasets", _pct(m["per_fold_mean_au_f1"]))],
         title=f"CD6ME, {summary['n_folds']} folds, {summary['n_clips']} test clips"
               + (f" [{'; '.join(flags)}]" if flags else ""))
    show(["", *m["per_au_f1"]], [("F1 %", *(_pct(v) for v in m["per_au_f1"].values())),
                                 ("positives", *m["positives"].values()),
                                 ("predicted", *m["predicted_positives"].values())],
         title="per action unit, all folds pooled")
    if m["aus_absent"]:
        print(f"AUs neither present nor predicted (F1 counted as 0, as MEB counts it): "
              f"{', '.join(m['aus_absent'])}")
    if summary.get("folds_hash"):
        print(f"folds: {summary['folds_file']} in the run's folder (hash "
              f"{summary['folds_hash']})")
    print(f"results: {where}")
