"""Speaker-verification metrics in plain numpy: EER, minDCF, actDCF, Cllr and the DET curve.

Definitions follow ``METRICS.md``: a trial is accepted when its score s >= theta;
P_miss(theta) = #{target s < theta} / N_tar and P_fa(theta) = #{non-target s >= theta} / N_non.
Every function sorts once and reads all operating points off cumulative sums: O(N log N) time, O(N)
memory. Tied scores are grouped, so thresholds are evaluated only at distinct score values and the
result never depends on the order in which a sort leaves equal scores.

>>> scores = [0.9, 0.8, 0.7, 0.4, 0.6, 0.3, 0.2, 0.1]
>>> labels = [1, 1, 1, 1, 0, 0, 0, 0]
>>> round(eer(scores, labels), 6)
0.25
>>> round(min_dcf(scores, labels, p_target=0.5), 6)
0.25
>>> fpr, fnr, thresholds = det_curve([0.2, 0.5, 0.5], [0, 1, 0])
>>> fpr.tolist(), fnr.tolist(), thresholds.tolist()
([1.0, 0.5, 0.0], [0.0, 0.0, 1.0], [0.2, 0.5, inf])
"""

from __future__ import annotations

import math

import numpy as np

from ssps.errors import SSPSError


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: (N,) float64 finite scores, (N,) bool labels with both classes present."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise SSPSError(f"scores and labels differ in length: {s.size} scores, {y.size} labels")
    if y.dtype != np.bool_:
        if y.size and not np.all((y == 0) | (y == 1)):
            bad = y[(y != 0) & (y != 1)][0]
            raise SSPSError(f"labels must be bool or 0/1, got {bad!r}")
        y = y.astype(np.bool_)
    if not np.all(np.isfinite(s)):
        n_bad = int(np.sum(~np.isfinite(s)))
        raise SSPSError(f"{n_bad} score(s) are NaN or infinite; every trial needs a finite score")
    if not y.any():
        raise SSPSError("no target trials (every label is 0)")
    if y.all():
        raise SSPSError("no non-target trials (every label is 1)")
    return s, y


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Error rates at every distinct threshold.

    Args:
        scores: (N,) trial scores, higher = more likely the same speaker.
        labels: (N,) bool or 0/1, True = target trial.

    Returns:
        fpr: (K+1,) P_fa at each threshold, from 1 down to 0.
        fnr: (K+1,) P_miss at each threshold, from 0 up to 1.
        thresholds: (K+1,) the K distinct scores in increasing order, then +inf (reject everything).
        Thresholding at the lowest score accepts everything, so it stands for -inf as well.
    """
    s, y = _check(scores, labels)
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    # First position of each distinct value: a threshold there accepts that value and everything above.
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.r_[first, s.size]
    tar_below = np.r_[0, np.cumsum(y)][pos]  # targets with score < threshold
    non_below = np.r_[0, np.cumsum(~y)][pos]
    n_tar, n_non = tar_below[-1], non_below[-1]
    fnr = tar_below / n_tar
    fpr = (n_non - non_below) / n_non
    thresholds = np.r_[s[first], np.inf]
    return fpr, fnr, thresholds


def _eer_point(fpr: np.ndarray, fnr: np.ndarray) -> tuple[int, float]:
    """Index i of the first operating point with P_miss >= P_fa, and the interpolated EER."""
    d = fnr - fpr  # non-decreasing, from -1 (accept all) to +1 (reject all)
    i = int(np.argmax(d >= 0))
    if d[i] == 0:
        return i, float(fnr[i])
    # The crossing lies on the segment between points i-1 and i: solve (1-t)*d[i-1] + t*d[i] = 0.
    t = d[i - 1] / (d[i - 1] - d[i])
    return i, float(fnr[i - 1] + t * (fnr[i] - fnr[i - 1]))


def eer(scores, labels) -> float:
    """Equal error rate, as a fraction.

    Convention: the DET operating points at adjacent distinct thresholds are joined by straight
    segments and the EER is where that polyline crosses P_miss = P_fa (linear interpolation between
    the two steps, as the NIST scoring tool does). It needs no choice between "larger rate" and "mean
    rate" at the closest point, it is continuous in the data, and on continuous scores it differs from
    those readings by less than one step (1 / min(N_tar, N_non)). All-equal scores give exactly 0.5:
    the only points are "accept all" (0, 1) and "reject all" (1, 0), a chance-level system.

    Args:
        scores: (N,) trial scores.
        labels: (N,) bool or 0/1, True = target trial.

    Returns:
        EER in [0, 1].

    >>> eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]), eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])
    (0.0, 1.0)
    >>> eer([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])
    0.5
    """
    fpr, fnr, _ = det_curve(scores, labels)
    return _eer_point(fpr, fnr)[1]


def eer_threshold(scores, labels) -> float:
    """A score threshold at the EER: the lowest distinct score at which P_miss >= P_fa.

    Use it as a starting decision threshold for ``ssps verify``; it is not calibrated.
    """
    fpr, fnr, thresholds = det_curve(scores, labels)
    i, _ = _eer_point(fpr, fnr)
    return float(thresholds[min(i, len(thresholds) - 2)])  # never +inf: the top score at most


def _default_cost(p_target: float, c_miss: float, c_fa: float) -> float:
    if not 0.0 < p_target < 1.0:
        raise SSPSError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise SSPSError(f"c_miss and c_fa must be positive, got {c_miss}, {c_fa}")
    return min(c_miss * p_target, c_fa * (1.0 - p_target))


def min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Minimum normalised detection cost over all thresholds.

    C_det(theta) = c_miss * p_target * P_miss + c_fa * (1 - p_target) * P_fa, minimised over every
    distinct score and +-inf, divided by min(c_miss * p_target, c_fa * (1 - p_target)): 1.0 is the
    cost of always accepting or always rejecting.

    Args:
        scores: (N,) trial scores.
        labels: (N,) bool or 0/1, True = target trial.
        p_target: prior probability of a target trial (0.01 in the SSPS paper, 0.05 in VoxSRC).
        c_miss: cost of a miss.
        c_fa: cost of a false alarm.

    Returns:
        minDCF in [0, 1].

    >>> min_dcf([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    0.0
    """
    c_def = _default_cost(p_target, c_miss, c_fa)
    fpr, fnr, _ = det_curve(scores, labels)
    c_det = c_miss * p_target * fnr + c_fa * (1.0 - p_target) * fpr
    return float(np.min(c_det) / c_def)


def act_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Actual normalised detection cost of scores read as calibrated log-likelihood ratios.

    The Bayes threshold theta* = ln(c_fa * (1 - p_target) / (c_miss * p_target)) is applied
    (accept s >= theta*) and C_det is normalised as in :func:`min_dcf`. Raw cosine scores are not LLRs,
    so their actDCF mostly measures miscalibration; it can exceed 1.

    >>> act_dcf([-3.0, -2.0, 5.0, 6.0], [0, 0, 1, 1], p_target=0.01)  # theta* = ln 99 = 4.595
    0.0
    """
    c_def = _default_cost(p_target, c_miss, c_fa)
    s, y = _check(scores, labels)
    theta = math.log(c_fa * (1.0 - p_target) / (c_miss * p_target))
    p_miss = np.mean(s[y] < theta)
    p_fa = np.mean(s[~y] >= theta)
    return float((c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa) / c_def)


def cllr(scores, labels) -> float:
    """Log-likelihood-ratio cost, in bits, of scores read as natural-log LLRs.

    Cllr = 1 / (2 ln 2) * [mean_tar ln(1 + e^-s) + mean_non ln(1 + e^s)]; 1.0 is the cost of a system
    that always outputs 0, and 0 is perfect.

    >>> cllr([0.0, 0.0], [0, 1])
    1.0
    """
    s, y = _check(scores, labels)
    # logaddexp(0, x) = ln(1 + e^x) without overflow for large |x|.
    c_tar = np.mean(np.logaddexp(0.0, -s[y]))
    c_non = np.mean(np.logaddexp(0.0, s[~y]))
    return float((c_tar + c_non) / (2.0 * math.log(2.0)))
