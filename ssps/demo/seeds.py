"""Figures over seeds: mean ± standard deviation per method, and whether a difference exceeds the spread.

A claimed gain is a mean over several seeds beside the seed spread; one seed is an anecdote.

>>> s = summarise([0.20, 0.22, 0.24])
>>> round(s["mean"], 4), round(s["std"], 4), s["n"]
(0.22, 0.02, 3)
>>> d = compare(summarise([0.20, 0.21, 0.19]), summarise([0.25, 0.26, 0.24]))
>>> round(d["delta"], 4), d["exceeds_spread"]
(-0.05, True)
"""

from __future__ import annotations

import math

SPREAD = 2.0  # a difference counts when it exceeds this many standard deviations of the reference's seeds


def summarise(values: list[float]) -> dict:
    """Mean, sample standard deviation (n - 1; 0 for one value), min, max and the values themselves."""
    n = len(values)
    if n == 0:
        raise ValueError("summarise: no values")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n, "min": min(values), "max": max(values), "values": list(values)}


def compare(candidate: dict, reference: dict, spread: float = SPREAD) -> dict:
    """Candidate minus reference (means), against ``spread`` x the reference's seed standard deviation.

    ``exceeds_spread`` is None when the reference has a single seed (no spread to compare with).
    """
    delta = candidate["mean"] - reference["mean"]
    std = reference["std"]
    exceeds = None if reference["n"] < 2 else abs(delta) > spread * std
    return {
        "delta": delta,
        "reference_std": std,
        "in_stds": delta / std if std > 0 else None,
        "exceeds_spread": exceeds,
    }


def gap_closed(candidate: float, baseline: float, upper: float) -> float | None:
    """Share of the baseline-to-upper-bound gap (e.g. SimCLR -> oracle EER) that the candidate closes."""
    gap = baseline - upper
    return (baseline - candidate) / gap if gap > 0 else None


def pm(s: dict, scale: float = 100.0, digits: int = 2) -> str:
    """'21.32 ± 0.45' (percent by default); a single seed prints without the ±."""
    if s["n"] < 2:
        return f"{scale * s['mean']:.{digits}f}"
    return f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f}"
