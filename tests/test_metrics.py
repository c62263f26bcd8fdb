"""UF1 / UAR against confusion matrices worked out by hand."""

import math

import pytest

from mer_ray.metrics import loso_scores, scores, uar, uf1


def test_hand_computed_three_class():
    # truth 0 0 0 1 1 2, pred 0 0 1 1 2 2
    # class 0: TP2 FP0 FN1 -> F1 4/5, recall 2/3
    # class 1: TP1 FP1 FN1 -> F1 2/4, recall 1/2
    # class 2: TP1 FP1 FN0 -> F1 2/3, recall 1
    t, p = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    s = scores(t, p, [0, 1, 2])
    assert s.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert s.uf1 == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert s.uar == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert uf1(t, p, [0, 1, 2]) == s.uf1 and uar(t, p, [0, 1, 2]) == s.uar


def test_class_absent_from_truth_and_prediction_is_left_out():
    # class 2 never occurs: the mean runs over classes 0 and 1 only
    t, p = [0, 0, 1, 1], [0, 1, 1, 1]
    s = scores(t, p, [0, 1, 2])
    assert s.absent == [2] and s.f1[2] is None and s.recall[2] is None
    assert s.uf1 == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert s.uar == pytest.approx((1 / 2 + 1) / 2)


def test_class_predicted_but_not_true():
    # class 2 predicted once, never true: F1 = 0 counts in UF1; no recall, so not in UAR
    t, p = [0, 1, 1], [0, 1, 2]
    s = scores(t, p, [0, 1, 2])
    assert s.absent == [] and s.f1[2] == 0.0 and s.recall[2] is None
    assert s.uf1 == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert s.uar == pytest.approx((1 + 1 / 2) / 2)


def test_aggregate_differs_from_per_fold_mean():
    folds = [([0, 0, 1], [0, 0, 1]), ([1, 2, 2, 2], [2, 2, 2, 2])]
    out = loso_scores(folds, [0, 1, 2])
    agg = scores([0, 0, 1, 1, 2, 2, 2], [0, 0, 1, 2, 2, 2, 2], [0, 1, 2])
    assert out["aggregate"]["uf1"] == pytest.approx(agg.uf1)
    fold2 = scores([1, 2, 2, 2], [2, 2, 2, 2], [0, 1, 2])  # class 0 absent in fold 2
    assert fold2.absent == [0]
    assert out["per_fold_mean"]["uf1"] == pytest.approx((1.0 + fold2.uf1) / 2)
    assert not math.isclose(out["per_fold_mean"]["uf1"], out["aggregate"]["uf1"])


def test_bootstrap_interval_over_subjects():
    import numpy as np

    from mer_ray.metrics import bootstrap_interval, scores

    rng = np.random.default_rng(0)
    by_subject = {}
    for i in range(12):
        y = rng.integers(0, 3, 10)
        p = np.where(rng.random(10) < 0.7, y, rng.integers(0, 3, 10))
        by_subject[f"s{i:02d}"] = (y.tolist(), p.tolist())
    ci = bootstrap_interval(by_subject, [0, 1, 2], resamples=500, seed=3)
    point = scores(sum((v[0] for v in by_subject.values()), []),
                   sum((v[1] for v in by_subject.values()), []), [0, 1, 2])
    assert ci["uf1"][0] < point.uf1 < ci["uf1"][1] and ci["uar"][0] < point.uar < ci["uar"][1]
    assert ci == bootstrap_interval(by_subject, [0, 1, 2], resamples=500, seed=3)  # seeded
    assert ci["unit"] == "test subject" and ci["resamples"] == 500
    # subjects that all look alike leave nothing to resample: the interval closes
    same = {f"s{i}": ([0, 1, 2], [0, 1, 1]) for i in range(5)}
    flat = bootstrap_interval(same, [0, 1, 2], resamples=200)
    assert flat["uf1"][0] == pytest.approx(flat["uf1"][1])
    # several seeds' runs: the interval of their mean, between the runs' own
    other = {s: (y, y) for s, (y, _) in by_subject.items()}  # a perfect run
    both = bootstrap_interval([by_subject, other], [0, 1, 2], resamples=500, seed=3)
    assert ci["uf1"][0] < both["uf1"][0] and both["uf1"][1] <= 1.0
    with pytest.raises(ValueError, match="same test subjects"):
        bootstrap_interval([by_subject, {"x": ([0], [0])}], [0, 1, 2])
