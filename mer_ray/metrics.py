"""UF1 and UAR (METHOD.md section 7), in one place.

    UF1 = (1/C) sum_c 2 TP_c / (2 TP_c + FP_c + FN_c)
    UAR = (1/C) sum_c TP_c / N_c

The mean runs over the classes *present*: a class absent from both the truth and the
predictions has no defined F1 or recall and is left out of the mean; ``Scores.absent`` names it
so reports can say so. A class that is predicted but absent from the truth counts for UF1
(F1 = 0) and is left out of UAR (no recall). Primary figures are computed over all folds'
predictions concatenated (MEGC convention); ``per_fold_mean`` is the other convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Scores:
    uf1: float
    uar: float
    f1: dict[int, float | None]  # per class; None when the class is absent everywhere
    recall: dict[int, float | None]  # per class; None when the class has no true samples
    confusion: list[list[int]]  # rows: truth, columns: prediction, in ``labels`` order
    absent: list[int]  # classes in neither truth nor prediction (left out of both means)
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def scores(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> Scores:
    # Imported here: scikit-learn costs about a second to import, and every Ray process that
    # only passes this module along (a Tune trial driving a fold) would pay it.
    from sklearn.metrics import confusion_matrix

    labels = list(labels)
    cm = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=labels)
    tp = np.diag(cm).astype(float)
    fn = cm.sum(axis=1) - tp  # row sums: true samples of c
    fp = cm.sum(axis=0) - tp
    f1, recall, absent = {}, {}, []
    for i, c in enumerate(labels):
        n_true, n_pred = cm[i].sum(), cm[:, i].sum()
        if n_true == 0 and n_pred == 0:
            absent.append(c)
            f1[c] = recall[c] = None
            continue
        f1[c] = float(2 * tp[i] / (2 * tp[i] + fp[i] + fn[i]))
        recall[c] = float(tp[i] / n_true) if n_true else None
    f1_vals = [v for v in f1.values() if v is not None]
    rec_vals = [v for v in recall.values() if v is not None]
    return Scores(
        uf1=float(np.mean(f1_vals)) if f1_vals else float("nan"),
        uar=float(np.mean(rec_vals)) if rec_vals else float("nan"),
        f1=f1, recall=recall, confusion=cm.tolist(), absent=absent, n=int(cm.sum()),
    )


def uf1(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> float:
    return scores(y_true, y_pred, labels).uf1


def uar(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> float:
    return scores(y_true, y_pred, labels).uar


def loso_scores(folds: Sequence[tuple[Sequence[int], Sequence[int]]],
                labels: Sequence[int]) -> dict:
    """Both conventions for a LOSO run: ``aggregate`` over all predictions concatenated (the
    primary figure) and ``per_fold_mean`` (the mean of each fold's UF1 / UAR)."""
    all_true = [y for t, _ in folds for y in t]
    all_pred = [y for _, p in folds for y in p]
    agg = scores(all_true, all_pred, labels)
    per_fold = [scores(t, p, labels) for t, p in folds]
    return {
        "aggregate": agg.as_dict(),
        "per_fold_mean": {
            "uf1": float(np.mean([s.uf1 for s in per_fold])),
            "uar": float(np.nanmean([s.uar for s in per_fold])),
        },
        "per_fold": [{"uf1": s.uf1, "uar": s.uar, "n": s.n, "absent": s.absent}
                     for s in per_fold],
    }


def bootstrap_interval(by_subject, labels: Sequence[int], resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> dict:
    """Percentile bootstrap interval of the aggregate UF1 and UAR over test subjects.

    ``by_subject`` maps each test subject to its (true labels, predictions). Each resample draws
    as many subjects as there are, with replacement, concatenates their predictions and scores
    them as the aggregate figure is scored (subjects, not clips, are the unit: clips of one
    subject are not independent). Seeded, so the interval is part of a reproducible result.
    A list of such mappings (one per training seed, over the same subjects) gives the interval
    of the mean over seeds: each resample's subjects are scored in every seed's run and the
    figures averaged.
    """
    runs = by_subject if isinstance(by_subject, list) else [by_subject]
    subjects = sorted(runs[0])
    if any(sorted(r) != subjects for r in runs):
        raise ValueError("every seed's run must have the same test subjects")
    labels = list(labels)
    idx = {c: i for i, c in enumerate(labels)}
    k = len(labels)
    # Each subject as a confusion matrix: a resample's matrix is the sum of its subjects'.
    mats = np.zeros((len(runs), len(subjects), k, k), np.int64)
    for r, run in enumerate(runs):
        for n, s in enumerate(subjects):
            for t, p in zip(*run[s]):
                mats[r, n, idx[t], idx[p]] += 1
    rng = np.random.default_rng([seed, 1000003])
    draws = rng.integers(0, len(subjects), size=(resamples, len(subjects)))
    uf1s, uars = np.empty(resamples), np.empty(resamples)
    for i, pick in enumerate(draws):
        figures = [_uf1_uar(mats[r, pick].sum(axis=0)) for r in range(len(runs))]
        uf1s[i], uars[i] = np.mean([f[0] for f in figures]), np.mean([f[1] for f in figures])
    tail = (1 - level) / 2 * 100
    lo, hi = tail, 100 - tail
    return {"uf1": [float(np.nanpercentile(uf1s, lo)), float(np.nanpercentile(uf1s, hi))],
            "uar": [float(np.nanpercentile(uars, lo)), float(np.nanpercentile(uars, hi))],
            "level": level, "resamples": resamples, "seed": seed, "unit": "test subject"}


def _uf1_uar(cm: np.ndarray) -> tuple[float, float]:
    """UF1 and UAR of a confusion matrix, with ``scores``' rules for absent classes."""
    tp = np.diag(cm).astype(float)
    n_true, n_pred = cm.sum(axis=1), cm.sum(axis=0)
    present = (n_true + n_pred) > 0
    f1 = 2 * tp / np.maximum(n_true + n_pred, 1)
    rec = tp / np.maximum(n_true, 1)
    uf1 = float(f1[present].mean()) if present.any() else float("nan")
    has_true = n_true > 0
    uar = float(rec[has_true].mean()) if has_true.any() else float("nan")
    return uf1, uar


def _subject_matrices(by_subject: dict, subjects: list, labels: list) -> np.ndarray:
    idx = {c: i for i, c in enumerate(labels)}
    mats = np.zeros((len(subjects), len(labels), len(labels)), np.int64)
    for n, s in enumerate(subjects):
        for t, p in zip(*by_subject[s]):
            mats[n, idx[t], idx[p]] += 1
    return mats


def paired_difference(a: dict, b: dict, labels: Sequence[int], resamples: int = 1000,
                      seed: int = 0, level: float = 0.95) -> dict:
    """How much method ``a`` differs from method ``b`` on the same test subjects: the aggregate
    UF1 and UAR of ``a`` minus ``b``, and their paired percentile bootstrap interval (each
    resample draws subjects with replacement and scores both methods on the same draw).
    ``a``, ``b``: test subject -> (true labels, predictions). ``excludes_zero``: whether the
    interval leaves 0 out (the difference is not explained by which subjects were tested)."""
    subjects = sorted(a)
    if sorted(b) != subjects:
        raise ValueError("a paired comparison needs the same test subjects in both runs")
    labels = list(labels)
    ma, mb = _subject_matrices(a, subjects, labels), _subject_matrices(b, subjects, labels)
    diff = np.subtract(_uf1_uar(ma.sum(0)), _uf1_uar(mb.sum(0)))
    rng = np.random.default_rng([seed, 1000033])
    draws = rng.integers(0, len(subjects), size=(resamples, len(subjects)))
    d = np.array([np.subtract(_uf1_uar(ma[pick].sum(0)), _uf1_uar(mb[pick].sum(0)))
                  for pick in draws])
    tail = (1 - level) / 2 * 100
    out = {"level": level, "resamples": resamples, "seed": seed, "unit": "test subject"}
    for j, key in enumerate(("uf1", "uar")):
        lo, hi = (float(np.nanpercentile(d[:, j], q)) for q in (tail, 100 - tail))
        out[key] = {"difference": float(diff[j]), "ci95": [lo, hi],
                    "excludes_zero": bool(lo > 0 or hi < 0)}
    return out
