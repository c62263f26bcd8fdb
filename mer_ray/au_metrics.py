"""Action-unit detection figures (the CD6ME protocol), as MEB reports them.

A clip's truth and prediction are bit masks over the protocol's AUs (bit i: ``names[i]``
present; ``data/aus.py``). A network's output is an independent probability per AU; an AU is
predicted present at probability > 0.5 (MEB thresholds the logits at 0, the same thing).

Per AU, the binary F1 of "present" over the clips scored: 2 TP / (2 TP + FP + FN). When an AU
is neither present nor predicted in those clips the F1 is undefined; it counts as 0, as MEB's
figures count it (scikit-learn's default), and the tables name such AUs. The figure of a run:
the mean of the 12 AU F1s over all folds' predictions pooled (primary), and per held-out
dataset (each fold's clips), with their mean. Intervals: percentile bootstrap over test
subjects (and training seeds, with several), as the emotion figures' (``metrics.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLD = 0.5


def bits(masks: Sequence[int], n: int) -> np.ndarray:
    """(N, n) 0/1 from N masks."""
    m = np.asarray(list(masks), dtype=np.int64).reshape(-1, 1)
    return ((m >> np.arange(n)) & 1).astype(np.int64)


def decide(probs: np.ndarray) -> list[int]:
    """Predicted masks from (N, n) probabilities: bit i where probs[:, i] > 0.5."""
    on = np.asarray(probs) > THRESHOLD
    if on.size == 0:
        return []
    return (on.astype(np.int64) << np.arange(on.shape[1])).sum(1).tolist()


def counts(y: Sequence[int], p: Sequence[int], n: int) -> np.ndarray:
    """(n, 3): TP, FP, FN per AU."""
    yb, pb = bits(y, n), bits(p, n)
    return np.stack([(yb & pb).sum(0), ((1 - yb) & pb).sum(0), (yb & (1 - pb)).sum(0)], 1)


def f1_of_counts(c: np.ndarray) -> np.ndarray:
    """F1 per AU from (..., n, 3) counts; 0 where undefined (no TP, FP or FN)."""
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def au_scores(y: Sequence[int], p: Sequence[int], names: Sequence[str]) -> dict:
    """Mean AU F1 and each AU's F1, positives and predicted positives over these clips."""
    n = len(names)
    c = counts(y, p, n)
    f1 = f1_of_counts(c)
    return {"mean_f1": float(f1.mean()) if n else 0.0,
            "per_au": {a: float(v) for a, v in zip(names, f1)},
            "positives": {a: int(c[i, 0] + c[i, 2]) for i, a in enumerate(names)},
            "predicted": {a: int(c[i, 0] + c[i, 1]) for i, a in enumerate(names)},
            "absent": [a for i, a in enumerate(names) if c[i].sum() == 0],
            "n": len(list(y))}


def _subject_counts(runs: list[dict], subjects: list, n: int) -> np.ndarray:
    """(runs, subjects, n, 3) counts of each run's predictions per subject."""
    return np.stack([np.stack([counts(*r[s], n) for s in subjects]) for r in runs])


def _weights(rng, resamples: int, subjects: int) -> np.ndarray:
    draws = rng.integers(0, subjects, size=(resamples, subjects))
    w = np.zeros((resamples, subjects), np.int64)
    np.add.at(w, (np.arange(resamples)[:, None], draws), 1)
    return w


def _mean_f1(c: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(runs, resamples): the mean AU F1 of each run on each resample of subjects."""
    pooled = np.einsum("bs,rsnk->rbnk", w, c)
    return f1_of_counts(pooled).mean(-1)


def _over_runs(f: np.ndarray, rng, resample_runs: bool) -> np.ndarray:
    """(resamples,): the mean over runs, the runs themselves resampled when asked."""
    if not resample_runs or f.shape[0] == 1:
        return f.mean(0)
    pick = rng.integers(0, f.shape[0], size=(f.shape[1], f.shape[0]))
    return np.take_along_axis(f.T, pick, 1).mean(1)


def au_interval(runs, n: int, resamples: int = 1000, seed: int = 0,
                resample_runs: bool = True) -> dict:
    """95 % percentile bootstrap interval of the mean AU F1. ``runs``: one dict per training
    seed (or one dict), test subject -> (true masks, predicted masks)."""
    runs = [runs] if isinstance(runs, dict) else list(runs)
    subjects = sorted(runs[0])
    rng = np.random.default_rng(seed)
    w = _weights(rng, resamples, len(subjects))
    f = _over_runs(_mean_f1(_subject_counts(runs, subjects, n), w), rng, resample_runs)
    lo, hi = np.percentile(f, [2.5, 97.5])
    return {"mean_f1": [float(lo), float(hi)], "resamples": resamples, "seed": seed,
            "unit": "test subject" + (" and training seed" if len(runs) > 1 else ""),
            "level": 0.95}


def au_paired(a, b, n: int, resamples: int = 1000, seed: int = 0) -> dict:
    """The mean AU F1 of ``a`` minus ``b`` (runs as ``au_interval``'s, on the same subjects),
    with its paired bootstrap interval (both scored on each resample's subjects) and the
    two-sided bootstrap p-value of a zero difference."""
    a = [a] if isinstance(a, dict) else list(a)
    b = [b] if isinstance(b, dict) else list(b)
    subjects = sorted(a[0])
    if sorted(b[0]) != subjects:
        raise ValueError("a paired difference needs the same test subjects on both sides")
    ca, cb = _subject_counts(a, subjects, n), _subject_counts(b, subjects, n)
    ones = np.ones((1, len(subjects)), np.int64)
    diff = float(_mean_f1(ca, ones).mean() - _mean_f1(cb, ones).mean())
    rng = np.random.default_rng(seed)
    w = _weights(rng, resamples, len(subjects))
    d = _over_runs(_mean_f1(ca, w), rng, True) - _over_runs(_mean_f1(cb, w), rng, True)
    lo, hi = np.percentile(d, [2.5, 97.5])
    p = min(1.0, 2 * min(float((d <= 0).mean()), float((d >= 0).mean())))
    return {"difference": diff, "ci95": [float(lo), float(hi)], "p": p}


def constant_masks(n: int, size: int) -> list[int]:
    """The constant predictor's prediction for ``size`` clips: every AU present in every clip
    (MEB's constant row, "always predicts ones"). Its F1 per AU is 2q / (1 + q), q the AU's
    share of the clips: the floor a detector must clear."""
    return [(1 << n) - 1] * size
