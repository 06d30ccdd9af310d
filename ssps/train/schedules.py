"""Schedules are data: pure functions that return one value per training step.

>>> step_decay(1.0, steps_per_epoch=2, epochs=4, every=2, factor=0.5).tolist()
[1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
>>> [round(v, 3) for v in cosine(1.0, 0.0, total=5, warmup=1).tolist()]
[0.0, 1.0, 0.854, 0.5, 0.146]
>>> [round(v, 3) for v in margin_warmup(0.2, steps_per_epoch=2, epochs=4, start=1, warmup=2).tolist()]
[0.0, 0.0, 0.0, 0.05, 0.1, 0.15, 0.2, 0.2]
"""

from __future__ import annotations

import numpy as np

from ssps.config import Config
from ssps.errors import SSPSError


def step_decay(base: float, steps_per_epoch: int, epochs: int, every: int, factor: float) -> np.ndarray:
    """``base * factor ** (epoch // every)`` for every step."""
    epoch = np.arange(steps_per_epoch * epochs) // steps_per_epoch
    return base * factor ** (epoch // max(every, 1))


def cosine(start: float, end: float, total: int, warmup: int = 0, warmup_start: float = 0.0) -> np.ndarray:
    """Linear warm-up from ``warmup_start`` over ``warmup`` steps, then cosine from ``start`` to ``end``."""
    warm = np.linspace(warmup_start, start, warmup, endpoint=False) if warmup else np.zeros(0)
    t = np.arange(total - len(warm)) / max(total - len(warm), 1)
    return np.concatenate([warm, end + 0.5 * (start - end) * (1 + np.cos(np.pi * t))])


def schedule_epochs(cfg: Config) -> int:
    """Epochs the schedules span: ``train.schedule_epochs``, or ``train.epochs`` when it is 0."""
    t = cfg.train
    if t.schedule_epochs and t.schedule_epochs < t.epochs:
        raise SSPSError(
            f"train.schedule_epochs={t.schedule_epochs}: expected 0 or at least train.epochs={t.epochs}"
        )
    return t.schedule_epochs or t.epochs


def learning_rate(cfg: Config, steps_per_epoch: int, world_size: int = 1) -> np.ndarray:
    """Per-step learning rate over ``schedule_epochs(cfg)`` epochs (the run uses its first steps)."""
    o, epochs = cfg.optim, schedule_epochs(cfg)
    total = steps_per_epoch * epochs
    if o.schedule == "step":
        return step_decay(o.lr, steps_per_epoch, epochs, o.step_every_epochs, o.step_factor)
    if o.schedule == "cosine":
        return cosine(o.lr, o.min_lr, total, o.warmup_epochs * steps_per_epoch)
    if o.schedule == "constant":
        return np.full(total, o.lr)
    raise SSPSError(f"optim.schedule={o.schedule!r}: expected step, cosine or constant")


def margin_warmup(margin: float, steps_per_epoch: int, epochs: int, start: int, warmup: int) -> np.ndarray:
    """AAM margin per step: 0 before epoch ``start``, a linear rise over ``warmup`` epochs, then ``margin``.

    A classifier that starts from random weights (or from an SSL encoder with fresh pseudo-speaker
    classes) learns first without the margin, which would otherwise make the task too hard at the start.
    """
    step = np.arange(steps_per_epoch * epochs, dtype=np.float64)
    if warmup <= 0:
        return np.where(step >= start * steps_per_epoch, margin, 0.0)
    progress = (step - start * steps_per_epoch) / (warmup * steps_per_epoch)
    return margin * np.clip(progress, 0.0, 1.0)


def teacher_momentum(cfg: Config, steps_per_epoch: int) -> np.ndarray:
    """DINO teacher EMA momentum, cosine from ``ema_start`` to ``ema_end``."""
    d = cfg.method.dino
    return cosine(d.ema_start, d.ema_end, steps_per_epoch * schedule_epochs(cfg))


def schedule_change(a: Config, b: Config, steps_per_epoch: int, steps: int = 0) -> str:
    """Empty if runs under configs ``a`` and ``b`` get the same learning rate (and, for DINO, teacher
    momentum) at every step both run (the first ``steps`` only, when given); else what differs first."""
    pairs = [("learning rate", learning_rate(a, steps_per_epoch), learning_rate(b, steps_per_epoch))]
    if a.method.name == "dino" or b.method.name == "dino":
        pairs.append(
            ("teacher momentum", teacher_momentum(a, steps_per_epoch), teacher_momentum(b, steps_per_epoch))
        )
    for name, x, y in pairs:
        n = min(len(x), len(y), steps) if steps else min(len(x), len(y))
        diff = np.nonzero(~np.isclose(x[:n], y[:n], rtol=1e-12, atol=0))[0]
        if diff.size:
            i = int(diff[0])
            return f"{name} at step {i}: {x[i]:.6g} vs {y[i]:.6g}"
    return ""


def ssps_phase(cfg: Config, epoch: int, queue_ready: bool) -> str:
    """'off', 'fill' (queues filled, base loss) or 'on' (SSPS positives) for ``epoch``.

    SSPS needs queues filled by one whole epoch first; a run started from a base checkpoint
    (``train.init``) therefore fills during its first epoch even past ``ssps.start_epoch``.
    """
    s = cfg.ssps
    if not s.enabled or epoch < s.start_epoch - 1:
        return "off"
    if epoch >= s.start_epoch and queue_ready:
        return "on"
    return "fill"
