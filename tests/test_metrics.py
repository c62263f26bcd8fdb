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
