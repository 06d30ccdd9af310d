"""DET plots: miss rate against false-alarm rate on normal-deviate (probit) axes, EER points marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import norm

from ssps.errors import SSPSError
from ssps.eval.metrics import det_curve, eer
from ssps.utils.files import atomic_path

# Tick positions, in percent; probit axes make a Gaussian-score system a straight line.
TICKS_PERCENT = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40]
# Wider windows get sparser ticks, so that labels do not collide.
TICKS_LOW_PERCENT = [0.01, 0.1, 0.5, 1, 2, 5, 10, 20, 40]
TICKS_HIGH_PERCENT = [0.1, 0.5, 2, 10, 40, 80, 95, 99]


def _limits_percent(eer_rate: float) -> tuple[float, float]:
    """Axis range: the usual 0.1-50 % window, widened for very good or (early in training) poor systems."""
    return (0.01 if eer_rate < 0.01 else 0.1), (50.0 if eer_rate <= 0.2 else 99.5)


def _probit(rate: np.ndarray, lo_percent: float) -> np.ndarray:
    # Rates of exactly 0 or 1 map to -inf/+inf; clip them just outside the plotted range.
    lo = lo_percent / 100 / 2
    return norm.ppf(np.clip(rate, lo, 1 - lo))


def plot_det(scores, labels, path: str | Path, title: str = "") -> None:
    """Write one system's DET curve as PNG, atomically.

    Args:
        scores: (N,) trial scores.
        labels: (N,) bool or 0/1, True = target trial.
        path: output ``.png`` file.
        title: plot title (the EER is given in the legend).
    """
    plot_det_curves({"DET": (scores, labels)}, path, title)


def plot_det_curves(systems: dict[str, tuple], path: str | Path, title: str = "") -> None:
    """Write the DET curves of several systems on one probit plot, each with its EER point, atomically.

    Args:
        systems: legend label -> (scores (N,), labels (N,)); the trial lists may differ.
        path: output ``.png`` file.
        title: plot title.
    """
    # The object-oriented API with the Agg canvas: no pyplot, no global backend, safe in threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not systems:
        raise SSPSError(f"{path}: no systems to plot")
    curves = {name: (det_curve(s, y)[:2], eer(s, y)) for name, (s, y) in systems.items()}
    rates = [rate for _, rate in curves.values()]
    lo, hi = _limits_percent(min(rates))[0], _limits_percent(max(rates))[1]
    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, (name, ((fpr, fnr), rate)) in enumerate(curves.items()):
        color = f"C{k % 10}"
        ax.plot(
            _probit(fpr, lo), _probit(fnr, lo), lw=1.5, color=color, label=f"{name} (EER {100 * rate:.2f}%)"
        )
        ax.plot([_probit(rate, lo)], [_probit(rate, lo)], "o", color=color, ms=5)
    ax.plot(_probit(np.array([0.0, 1.0]), lo), _probit(np.array([0.0, 1.0]), lo), ":", color="grey", lw=0.8)
    shown = TICKS_HIGH_PERCENT if hi > 50 else TICKS_LOW_PERCENT if lo < 0.1 else TICKS_PERCENT
    ticks = norm.ppf(np.array(shown) / 100)
    labels_text = [f"{t:g}" for t in shown]
    lim = norm.ppf(np.array([lo, hi]) / 100)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ticks, labels_text)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.set_title(title)
    ax.grid(True, lw=0.5, alpha=0.5)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
