"""LBP-TOP + linear SVM: Zhao and Pietikainen's local binary patterns on three orthogonal
planes ("Dynamic texture recognition using local binary patterns with an application to facial
expressions", TPAMI 2007), the baseline of the micro-expression datasets and of MEGC 2019.

Input: the aligned clip (T frames, grey levels). Each clip is cut into a ``GRID`` x ``GRID``
block grid; in each block, uniform LBP codes (the 8 neighbours of the 3 x 3 square: radius 1;
59 bins: the 58 uniform patterns and one for the rest) are counted on the XY planes (each
frame), the XT planes (each row over time) and the YT planes (each column over time), each
histogram normalised to sum to 1:
``GRID^2 x 3 x 59`` features (4,425 with a 5 x 5 grid). A linear SVM (scikit-learn's
``LinearSVC``, one-vs-rest) is trained on the fold's training subjects for each C in
``C_GRID``; the C with the best validation UF1 (ties: the smaller C) is kept (with
``train.selection=test``, the leaky protocol: the best test UF1). Class scores are the softmax
of the SVM's decision values (scores, not calibrated probabilities). The SVM's weights and
biases, ``classes x (features + 1)``: 13,278 trainable parameters for 3 classes.

Published on the MEGC 2019 composite (3 classes): the organisers' LBP-TOP baseline UF1
0.5882, UAR 0.5785; MEB's re-runs of LBP-TOP + SVM 0.60-0.61 UF1.
"""

from __future__ import annotations

import time

import numpy as np

from ..fitting.job import FoldJob, FoldResult
from ..records import FoldRecord, Predictions
from .registry import Method, register

GRID = 5
POINTS, RADIUS = 8, 1
BINS = POINTS * (POINTS - 1) + 3  # nri_uniform codes: 59 for 8 neighbours
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


# The 8 neighbours of the 3 x 3 square around a pixel, in circular order, and the uniform
# patterns' bins: the 58 codes with at most two 0/1 transitions around the circle get a bin
# each, every other code the 59th.
OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _uniform_bins() -> np.ndarray:
    lut, nxt = np.full(256, BINS - 1, np.int64), 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            lut[code], nxt = nxt, nxt + 1
    return lut


UNIFORM = _uniform_bins()


def _plane_codes(volume: np.ndarray, a: int, b: int) -> np.ndarray:
    """Uniform LBP bins of every interior pixel of the planes spanned by axes ``a`` and ``b``
    of ``volume`` (T, S, S): its 8 neighbours in that plane against the centre."""
    def cut(da: int, db: int):
        idx = [slice(None)] * 3
        idx[a] = slice(1 + da, volume.shape[a] - 1 + da)
        idx[b] = slice(1 + db, volume.shape[b] - 1 + db)
        return volume[tuple(idx)]

    centre = cut(0, 0)
    code = np.zeros(centre.shape, np.int64)
    for bit, (da, db) in enumerate(OFFSETS):
        code |= (cut(da, db) >= centre).astype(np.int64) << bit
    return UNIFORM[code]


def _histograms(bins: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Normalised histograms of ``bins`` per block of the grid, by each code's pixel row and
    column in the frame."""
    block = (np.minimum(rows * GRID // size, GRID - 1) * GRID
             + np.minimum(cols * GRID // size, GRID - 1))
    counts = np.bincount((block * BINS + bins).ravel(), minlength=GRID * GRID * BINS)
    hist = counts.reshape(GRID * GRID, BINS).astype(np.float64)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1.0)


def lbp_top(frames: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) uint8 -> (GRID^2 * 3 * BINS,) float32: the clip's LBP-TOP features."""
    grey = frames.astype(np.float32).mean(-1).round()  # (T, S, S): t, y, x
    t, s, _ = grey.shape
    inner = np.arange(1, s - 1)
    every = np.arange(s)
    parts = []
    for a, b, ys, xs in ((1, 2, inner, inner),  # XY: each frame
                         (0, 2, every, inner),  # XT: each row over time
                         (0, 1, inner, every)):  # YT: each column over time
        bins = _plane_codes(grey, a, b)  # (T or T-2, len(ys), len(xs))
        rows = np.broadcast_to(ys[None, :, None], bins.shape)
        cols = np.broadcast_to(xs[None, None, :], bins.shape)
        parts.append(_histograms(bins, rows, cols, s).ravel())
    return np.concatenate(parts).astype(np.float32)


def _features(job: FoldJob, split: str, cache: dict | None) -> tuple[list[str], np.ndarray,
                                                                      np.ndarray]:
    """(clip keys, labels, features) of a split; features computed once per clip and process
    (``cache``)."""
    cache = {} if cache is None else cache
    reader = job.sources[split].reader(job.columns)
    keys, labels, feats = [], [], []
    override = job.label_override or {}
    for batch in reader.iter_batches(batch_size=16):
        for s, c, y, frames in zip(batch["subject"], batch["clip"], batch["label_id"],
                                   batch["frames"]):
            key = f"{s}/{c}"
            if key not in cache:
                cache[key] = lbp_top(frames)
            keys.append(key)
            labels.append(override.get(key, int(y)))
            feats.append(cache[key])
    return keys, np.array(labels, np.int64), np.stack(feats)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _scores(svm, x: np.ndarray, classes: int) -> np.ndarray:
    """Class scores (N, classes): the softmax of the decision values, classes the training
    split lacked at -inf."""
    dec = svm.decision_function(x)
    if dec.ndim == 1:  # two classes seen
        dec = np.stack([-dec, dec], 1)
    full = np.full((len(x), classes), -np.inf)
    full[:, svm.classes_] = dec
    return _softmax(full)


class OneVsRest:
    """The multi-label (CD6ME) head: one linear SVM per action unit on "present", its
    probability the sigmoid of the decision value; an AU with one answer in training (always
    or never present) is predicted that way."""

    def __init__(self, c: float, seed: int, n: int):
        self.c, self.seed, self.n = c, seed, n
        self.svms: list = []

    def fit(self, x: np.ndarray, masks: np.ndarray) -> OneVsRest:
        from sklearn.svm import LinearSVC

        from ..au_metrics import bits

        y = bits(masks, self.n)
        for i in range(self.n):
            if y[:, i].min() == y[:, i].max():
                self.svms.append(float(y[0, i]) if len(y) else 0.0)
            else:
                self.svms.append(LinearSVC(C=self.c, max_iter=20000,
                                           random_state=self.seed).fit(x, y[:, i]))
        return self

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        cols = [np.full(len(x), s) if isinstance(s, float)
                else 1.0 / (1.0 + np.exp(-s.decision_function(x))) for s in self.svms]
        return np.stack(cols, 1)


def _probabilities(job: FoldJob, svm, x: np.ndarray) -> np.ndarray:
    if job.multilabel:
        return svm.probabilities(x)
    return _scores(svm, x, len(job.class_names))


def _fit_c(job: FoldJob, data: dict, split: str | None) -> tuple[object, float, list[dict]]:
    """The SVM for each C, scored on ``split`` (None: no split to choose on: C = 1); under a
    multi-label protocol, one SVM per AU (``OneVsRest``) scored by the mean AU F1."""
    from sklearn.svm import LinearSVC

    task, seed = job.task, job.experiment.train.seed
    _, y, x = data["train"]
    history, best = [], (None, -1.0, None)
    for i, c in enumerate(C_GRID if split else (1.0,)):
        svm = OneVsRest(c, seed, len(job.class_names)).fit(x, y) if job.multilabel else \
            LinearSVC(C=c, max_iter=20000, random_state=seed).fit(x, y)
        row = {"epoch": i, "C": c}
        if split:
            _, sy, sx = data[split]
            figure, uar = task.score(sy, _probabilities(job, svm, sx))
            row[f"{split}_{task.figure}"] = figure
            if uar is not None:
                row[f"{split}_uar"] = uar
            if figure > best[1]:
                best = (svm, figure, c)
        else:
            best = (svm, -1.0, c)
        history.append(row)
    return best[0], best[2], history


def fit(job: FoldJob, device=None, resume=None, on_epoch=None, cache=None,
        every_epoch=None) -> FoldResult:
    """Features, the C grid scored on the selection split, the test subject predicted once."""
    start = time.perf_counter()
    tc = job.experiment.train
    leaky = tc.selection == "test"
    wanted = ["train", *(["val"] if "val" in job.sources else []),
              *(["test"] if leaky and job.predicts_test else [])]
    data = {name: _features(job, name, cache) for name in wanted}
    split = "test" if leaky else ("val" if "val" in data else None)
    svm, c, history = _fit_c(job, data, split)
    best = next(h for h in history if h["C"] == c)
    if every_epoch is not None:
        every_epoch(best, True)
    record = FoldRecord(
        test_subject=job.split.test, val_subjects=list(job.split.val),
        train_subjects=list(job.split.train), epochs_run=len(history),
        best_epoch=best["epoch"], best_val_uf1=best.get(f"val_{job.task.figure}", -1.0),
        stopped_early=False,
        history=history, seconds=0.0, device="cpu", pretrained=False,
        weights_source="none: LBP-TOP features", weights_sha256=None, cache_trunk=False,
        augmented=False, trunk_tokens=None, attempts=[], adaptation_clips=False,
        method=job.experiment.model.method, selection=tc.selection,
        extra={**dict(job.extra), "svm_c": c, "features": int(data["train"][2].shape[1])})
    predictions = None
    if job.predicts_test:
        keys, ty, tx = data["test"] if "test" in data else _features(job, "test", cache)
        probs = _probabilities(job, svm, tx)
        record.test_uf1, record.test_uar = job.task.score(ty, probs)
        record.n_test = len(keys)
        predictions = Predictions(keys, ty.tolist(), probs.tolist())
    record.seconds = round(time.perf_counter() - start, 2)
    record.timing = {"setup_s": 0.0, "train_s": record.seconds, "finish_s": 0.0}
    return FoldResult(job.key, record, predictions, b"")


class LbpTopSvm(Method):
    name = "lbptop_svm"
    summary = "LBP-TOP histograms over a 5 x 5 block grid, linear SVM"

    def fit(self, job, device=None, resume=None, on_epoch=None, cache=None, every_epoch=None):
        return fit(job, device, resume, on_epoch, cache, every_epoch)

    def parameters(self, exp, classes: int) -> int:
        return classes * (GRID * GRID * 3 * BINS + 1)

    def augmentation(self, exp) -> str:
        return "none: LBP-TOP histograms of the aligned clips"


register(LbpTopSvm())
