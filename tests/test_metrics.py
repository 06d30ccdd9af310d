"""Metrics against hand-computed cases, a brute-force threshold sweep and the golden properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_curve

from ssps.errors import SSPSError
from ssps.eval.metrics import act_dcf, cllr, det_curve, eer, eer_threshold, min_dcf


def brute_force_rates(s, y):
    """(fpr, fnr) at every distinct score and +-inf, by counting directly: O(N^2), no sorting tricks."""
    thresholds = np.r_[-np.inf, np.unique(s), np.inf]
    fnr = np.array([np.mean(s[y] < t) for t in thresholds])
    fpr = np.array([np.mean(s[~y] >= t) for t in thresholds])
    return fpr, fnr


def brute_force_eer(s, y):
    """The NIST-style reading: the crossing of the segments joining consecutive operating points."""
    fpr, fnr = brute_force_rates(s, y)
    for k in range(1, len(fpr)):
        d0, d1 = fnr[k - 1] - fpr[k - 1], fnr[k] - fpr[k]
        if d0 <= 0 <= d1:
            if d0 == d1:
                return fnr[k]
            t = d0 / (d0 - d1)
            return fnr[k - 1] + t * (fnr[k] - fnr[k - 1])
    raise AssertionError("no crossing")


def brute_force_min_dcf(s, y, p, c_miss=1.0, c_fa=1.0):
    fpr, fnr = brute_force_rates(s, y)
    return np.min(c_miss * p * fnr + c_fa * (1 - p) * fpr) / min(c_miss * p, c_fa * (1 - p))


def eer_closest_max(s, y):
    fpr, fnr = brute_force_rates(s, y) if len(s) < 2000 else det_curve(s, y)[:2]
    i = np.argmin(np.abs(fnr - fpr))
    return max(fnr[i], fpr[i])


def eer_closest_mean(s, y):
    fpr, fnr, _ = det_curve(s, y)
    i = np.argmin(np.abs(fnr - fpr))
    return (fnr[i] + fpr[i]) / 2


def eer_sklearn_interp(s, y):
    """The voxceleb_trainer / many-repos reading: interpolate sklearn's ROC onto fnr = fpr."""
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1 - tpr
    i = np.argmax(fnr <= fpr)  # fnr decreasing along the ROC
    x0, x1, d0, d1 = fpr[i - 1], fpr[i], fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    return x0 + (x1 - x0) * d0 / (d0 - d1)


def test_hand_computed():
    # Sorted: 0.1n 0.2n 0.3n 0.4t 0.6n 0.7t 0.8t 0.9t. At theta = 0.6: P_miss = 1/4 (0.4), P_fa = 1/4 (0.6).
    s = np.array([0.9, 0.8, 0.7, 0.4, 0.6, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert eer(s, y) == pytest.approx(0.25, abs=1e-12)
    # p = 0.5: C = 0.5 (P_miss + P_fa), best 0.5 * 1/4 at theta 0.4 or 0.7; / 0.5 -> 0.25.
    assert min_dcf(s, y, p_target=0.5) == pytest.approx(0.25, abs=1e-12)
    # p = 0.01: a false alarm costs 99x a miss: theta 0.7 (P_miss 1/4, P_fa 0) -> 0.01 * 0.25 / 0.01.
    assert min_dcf(s, y, p_target=0.01) == pytest.approx(0.25, abs=1e-12)
    assert eer_threshold(s, y) == 0.6


def test_hand_computed_interpolated():
    # tar {2, 3}, non {1, 2.5}; points (fpr, fnr): t=1 (1, 0), t=2 (.5, 0), t=2.5 (.5, .5): d = 0 there.
    assert eer([2, 3, 1, 2.5], [1, 1, 0, 0]) == pytest.approx(0.5)
    # tar {1, 2, 3}, non {0, 2.5}: t=2 (fpr .5, fnr 1/3) -> d=-1/6; t=2.5 (.5, 2/3) -> d=1/6.
    # Segment from (.5, 1/3) to (.5, 2/3): crossing at fnr = 1/2.
    assert eer([1, 2, 3, 0, 2.5], [1, 1, 1, 0, 0]) == pytest.approx(0.5)
    # tar {2, 3, 4, 5}, non {1, 2.5}: t=2 (.5, 0); t=2.5 (.5, .25) -> d=-.25; t=3 (0, .25) -> d=.25;
    # segment from (.5, .25) to (0, .25): crossing at fnr = .25.
    assert eer([2, 3, 4, 5, 1, 2.5], [1, 1, 1, 1, 0, 0]) == pytest.approx(0.25)


def test_det_curve_ties_and_ends():
    fpr, fnr, thr = det_curve([0.5, 0.5, 0.5, 0.1], [1, 0, 1, 0])
    assert thr.tolist() == [0.1, 0.5, np.inf]
    assert fpr.tolist() == [1.0, 0.5, 0.0]
    assert fnr.tolist() == [0.0, 0.0, 1.0]


def test_perfect_and_inverted():
    rng = np.random.default_rng(0)
    tar, non = rng.uniform(1, 2, 50), rng.uniform(-2, 0.5, 70)
    s, y = np.r_[tar, non], np.r_[np.ones(50, bool), np.zeros(70, bool)]
    assert eer(s, y) == 0.0
    assert min_dcf(s, y) == 0.0
    assert min_dcf(s, y, p_target=0.05) == 0.0
    assert eer(-s, y) == 1.0
    assert min_dcf(-s, y) == pytest.approx(1.0)  # the best a useless system can do is accept/reject all


def test_all_equal_scores_is_chance():
    # Only "accept all" (fpr 1, fnr 0) and "reject all" (0, 1): the segment crosses at 0.5.
    assert eer(np.zeros(7), [1, 0, 0, 1, 0, 0, 0]) == 0.5
    assert min_dcf(np.zeros(7), [1, 0, 0, 1, 0, 0, 0]) == 1.0


@pytest.mark.parametrize(
    ("labels", "message"), [([0, 0, 0], "no target trials"), ([1, 1, 1], "no non-target trials")]
)
def test_missing_class(labels, message):
    for fn in (eer, min_dcf, det_curve, act_dcf, cllr):
        with pytest.raises(SSPSError, match=message):
            fn([0.1, 0.2, 0.3], labels)


def test_bad_input():
    with pytest.raises(SSPSError, match="differ in length"):
        eer([0.1, 0.2], [1, 0, 1])
    with pytest.raises(SSPSError, match="NaN"):
        eer([0.1, np.nan, 0.3], [1, 0, 1])
    with pytest.raises(SSPSError, match="bool or 0/1"):
        eer([0.1, 0.2, 0.3], [1, 0, 2])
    with pytest.raises(SSPSError, match="p_target"):
        min_dcf([0.1, 0.2], [1, 0], p_target=1.0)


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = rng.random(n) < 0.3
    s = np.round(rng.normal(size=n) + 1.2 * y, 1)  # rounding makes many ties, across classes too
    fpr_bf, fnr_bf = brute_force_rates(s, y)
    fpr, fnr, _ = det_curve(s, y)
    # Brute force includes -inf, which equals thresholding at the lowest score.
    np.testing.assert_array_equal(fpr, fpr_bf[1:])
    np.testing.assert_array_equal(fnr, fnr_bf[1:])
    assert eer(s, y) == pytest.approx(brute_force_eer(s, y), abs=1e-12)
    for p in (0.01, 0.05, 0.5):
        assert min_dcf(s, y, p) == pytest.approx(brute_force_min_dcf(s, y, p), abs=1e-12)
    assert min_dcf(s, y, 0.05, c_miss=10, c_fa=1) == pytest.approx(
        brute_force_min_dcf(s, y, 0.05, 10, 1), abs=1e-12
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=40))
def test_matches_brute_force_on_small_integer_scores(pairs):
    s = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs])
    if y.all() or not y.any():
        with pytest.raises(SSPSError):
            eer(s, y)
        return
    assert eer(s, y) == pytest.approx(brute_force_eer(s, y), abs=1e-12)
    assert min_dcf(s, y, 0.05) == pytest.approx(brute_force_min_dcf(s, y, 0.05), abs=1e-12)
    assert eer(-s, ~y) == pytest.approx(eer(s, y), abs=1e-12)


def test_tie_order_does_not_matter():
    rng = np.random.default_rng(1)
    y = rng.random(400) < 0.5
    s = np.round(rng.normal(size=400) + y, 0)
    perm = rng.permutation(400)
    assert eer(s, y) == eer(s[perm], y[perm])
    assert min_dcf(s, y) == min_dcf(s[perm], y[perm])


def test_monotonic_transform_invariance():
    rng = np.random.default_rng(2)
    y = rng.random(1000) < 0.2
    s = np.round(rng.normal(size=1000) + 2 * y, 2)
    for f in (lambda x: 3 * x + 7, np.exp, lambda x: np.tanh(x / 4), lambda x: x**3):
        assert eer(f(s), y) == pytest.approx(eer(s, y), abs=1e-12)
        assert min_dcf(f(s), y) == pytest.approx(min_dcf(s, y), abs=1e-12)
        assert min_dcf(f(s), y, 0.05) == pytest.approx(min_dcf(s, y, 0.05), abs=1e-12)


def test_swap_labels_negate_scores():
    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.4
    s = np.round(rng.normal(size=500) + y, 1)
    assert eer(-s, ~y) == pytest.approx(eer(s, y), abs=1e-12)


def test_conventions_agree_on_continuous_scores():
    rng = np.random.default_rng(4)
    n = 40_000  # one step = 1 / 20k = 5e-5 < 1e-4
    y = np.r_[np.ones(n // 2, bool), np.zeros(n // 2, bool)]
    s = rng.normal(size=n) + 1.5 * y
    ref = eer(s, y)
    assert 0.2 < ref < 0.3
    for other in (eer_closest_max, eer_closest_mean, eer_sklearn_interp):
        assert abs(other(s, y) - ref) < 1e-4, other.__name__


def test_act_dcf_and_cllr():
    s = np.array([5.0, 4.0, -1.0, 0.0, -5.0, 4.7])
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    theta = math.log(99)  # 4.595: targets 4.0, -1.0 missed; non 4.7 accepted
    assert theta < 4.7
    expected = (0.01 * 2 / 3 + 0.99 * 1 / 3) / 0.01
    assert act_dcf(s, y, p_target=0.01) == pytest.approx(expected)
    ref = (
        np.mean([math.log(1 + math.exp(-v)) for v in s[y]])
        + np.mean([math.log(1 + math.exp(v)) for v in s[~y]])
    ) / (2 * math.log(2))
    assert cllr(s, y) == pytest.approx(ref)
    assert cllr([1000.0, -1000.0], [1, 0]) == pytest.approx(0.0)  # no overflow on large LLRs
    assert cllr(np.zeros(4), [1, 0, 1, 0]) == pytest.approx(1.0)
