"""UF1 and UAR (docs/method.md, section 7), in one place.

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


def _stack(runs: list[dict], subjects: list, labels: list) -> np.ndarray:
    """Runs x subjects confusion matrices (R, N, K, K): a resample's matrix is the sum of its
    subjects'."""
    return np.stack([_subject_matrices(run, subjects, labels) for run in runs])


def _subjects_of(runs: list[dict]) -> list:
    subjects = sorted(runs[0])
    if any(sorted(r) != subjects for r in runs):
        raise ValueError("every seed's run must have the same test subjects")
    return subjects


def _draws(rng, resamples: int, subjects: int, runs: int, resample_runs: bool):
    """Each resample's subjects (resamples, N) and runs (resamples, R): subjects drawn with
    replacement; runs too with ``resample_runs`` (else every run, each once)."""
    pick = rng.integers(0, subjects, size=(resamples, subjects))
    if resample_runs and runs > 1:
        return pick, rng.integers(0, runs, size=(resamples, runs))
    return pick, np.tile(np.arange(runs), (resamples, 1))


def bootstrap_interval(by_subject, labels: Sequence[int], resamples: int = 1000, seed: int = 0,
                       level: float = 0.95, resample_runs: bool = False) -> dict:
    """Percentile bootstrap interval of the aggregate UF1 and UAR over test subjects.

    ``by_subject`` maps each test subject to its (true labels, predictions). Each resample draws
    as many subjects as there are, with replacement, concatenates their predictions and scores
    them as the aggregate figure is scored (subjects, not clips, are the unit: clips of one
    subject are not independent). Seeded, so the interval is part of a reproducible result.
    A list of such mappings (one per training seed, over the same subjects) gives the interval
    of the mean over seeds: each resample's subjects are scored in every seed's run and the
    figures averaged; with ``resample_runs`` the seeds are drawn with replacement too (the
    interval then also covers which training seeds happened to be run).
    """
    runs = by_subject if isinstance(by_subject, list) else [by_subject]
    subjects = _subjects_of(runs)
    labels = list(labels)
    mats = _stack(runs, subjects, labels)
    rng = np.random.default_rng([seed, 1000003])
    subject_draws, run_draws = _draws(rng, resamples, len(subjects), len(runs), resample_runs)
    # every resample of every run at once: (runs, resamples, 2), then each resample's runs
    per_run = np.stack([_uf1_uar_many(mats[r][subject_draws].sum(axis=1))
                        for r in range(len(runs))])
    drawn = per_run[run_draws.T, np.arange(resamples)]  # (runs drawn, resamples, 2)
    uf1s, uars = drawn[..., 0].mean(axis=0), drawn[..., 1].mean(axis=0)
    tail = (1 - level) / 2 * 100
    lo, hi = tail, 100 - tail
    return {"uf1": [float(np.nanpercentile(uf1s, lo)), float(np.nanpercentile(uf1s, hi))],
            "uar": [float(np.nanpercentile(uars, lo)), float(np.nanpercentile(uars, hi))],
            "level": level, "resamples": resamples, "seed": seed,
            "unit": "test subject" + (" and training seed" if resample_runs and len(runs) > 1
                                      else "")}


def _uf1_uar(cm: np.ndarray, present: np.ndarray | None = None) -> tuple[float, float]:
    """UF1 and UAR of a confusion matrix, with ``scores``' rules for absent classes;
    ``present``: the classes the UF1 averages over (default: those in this matrix's truth or
    predictions), so that two methods compared on one resample share one class set."""
    tp = np.diag(cm).astype(float)
    n_true, n_pred = cm.sum(axis=1), cm.sum(axis=0)
    if present is None:
        present = (n_true + n_pred) > 0
    f1 = 2 * tp / np.maximum(n_true + n_pred, 1)
    rec = tp / np.maximum(n_true, 1)
    uf1 = float(f1[present].mean()) if present.any() else float("nan")
    has_true = n_true > 0
    uar = float(rec[has_true].mean()) if has_true.any() else float("nan")
    return uf1, uar


def _uf1_uar_many(cms: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """``_uf1_uar`` of many confusion matrices at once: (B, K, K) -> (B, 2), the same rules
    (``present``: (B, K), default each matrix's own classes); NaN where a mean is empty."""
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(float)
    n_true, n_pred = cms.sum(axis=2), cms.sum(axis=1)
    if present is None:
        present = (n_true + n_pred) > 0
    f1 = 2 * tp / np.maximum(n_true + n_pred, 1)
    rec = tp / np.maximum(n_true, 1)
    has_true = n_true > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        uf1 = np.where(present, f1, 0).sum(axis=1) / present.sum(axis=1)
        uar = np.where(has_true, rec, 0).sum(axis=1) / has_true.sum(axis=1)
    return np.stack([uf1, uar], axis=1)


def _subject_matrices(by_subject: dict, subjects: list, labels: list) -> np.ndarray:
    idx = {c: i for i, c in enumerate(labels)}
    mats = np.zeros((len(subjects), len(labels), len(labels)), np.int64)
    for n, s in enumerate(subjects):
        for t, p in zip(*by_subject[s]):
            mats[n, idx[t], idx[p]] += 1
    return mats


def _paired(ma: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """(UF1, UAR) of ``a`` minus ``b`` on the same subjects (confusion matrices (K, K)), both
    averaged over one class set: every class in the truth or in either's predictions."""
    present = (ma.sum(0) + ma.sum(1) + mb.sum(0)) > 0
    return np.subtract(_uf1_uar(ma, present), _uf1_uar(mb, present))


def _paired_many(ma: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """``_paired`` of many resamples at once: (B, K, K) twice -> (B, 2)."""
    present = (ma.sum(1) + ma.sum(2) + mb.sum(1)) > 0
    return _uf1_uar_many(ma, present) - _uf1_uar_many(mb, present)


def paired_difference(a, b, labels: Sequence[int], resamples: int = 1000,
                      seed: int = 0, level: float = 0.95) -> dict:
    """How much method ``a`` differs from method ``b`` on the same test subjects: the aggregate
    UF1 and UAR of ``a`` minus ``b``, and their paired percentile bootstrap interval (each
    resample draws subjects with replacement and scores both methods on the same draw, over
    one class set).

    ``a``, ``b``: test subject -> (true labels, predictions), or lists of such mappings, one
    per training seed, paired by position (seed k of ``a`` with seed k of ``b``: the same
    validation subjects). With several seeds the difference is the mean over seeds of the
    per-seed differences, and each resample draws the seeds with replacement too, so the
    interval covers both which subjects were tested and which seeds were trained.

    ``excludes_zero``: whether the interval leaves 0 out. ``p``: the two-sided bootstrap
    p-value of "no difference" (twice the share of resamples on the far side of 0, at most 1),
    for adjusting several comparisons (``holm``)."""
    runs_a = a if isinstance(a, list) else [a]
    runs_b = b if isinstance(b, list) else [b]
    if len(runs_a) != len(runs_b):
        raise ValueError("a paired comparison needs as many seeds' runs on both sides")
    subjects = _subjects_of(runs_a)
    if _subjects_of(runs_b) != subjects:
        raise ValueError("a paired comparison needs the same test subjects in both runs")
    labels = list(labels)
    ma, mb = _stack(runs_a, subjects, labels), _stack(runs_b, subjects, labels)
    seeds = len(runs_a)
    diff = np.mean([_paired(ma[r].sum(0), mb[r].sum(0)) for r in range(seeds)], axis=0)
    rng = np.random.default_rng([seed, 1000033])
    subject_draws, run_draws = _draws(rng, resamples, len(subjects), seeds, True)
    d = np.stack([_paired_many(ma[r][subject_draws].sum(axis=1),
                               mb[r][subject_draws].sum(axis=1)) for r in range(seeds)])
    d = d[run_draws.T, np.arange(resamples)].mean(axis=0)  # (resamples, 2)
    tail = (1 - level) / 2 * 100
    out = {"level": level, "resamples": resamples, "seed": seed, "seeds": seeds,
           "unit": "test subject" + (" and training seed" if seeds > 1 else "")}
    for j, key in enumerate(("uf1", "uar")):
        lo, hi = (float(np.nanpercentile(d[:, j], q)) for q in (tail, 100 - tail))
        col = d[:, j][~np.isnan(d[:, j])]
        p = min(1.0, 2 * min(float(np.mean(col <= 0)), float(np.mean(col >= 0)))) \
            if len(col) else 1.0
        out[key] = {"difference": float(diff[j]), "ci95": [lo, hi],
                    "excludes_zero": bool(lo > 0 or hi < 0), "p": p}
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``pvalues`` (one family): each adjusted p-value, in the
    given order. Rejecting where the adjusted value is below alpha keeps the chance of any false
    "differs" in the family at most alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
