"""The exponential moving average that makes a teacher from a student, and its momentum schedule.

>>> cosine_momentum(0, 100, 0.996, 1.0), cosine_momentum(100, 100, 0.996, 1.0)
(0.996, 1.0)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter.

    Buffers (BatchNorm running statistics) are copied from the student. Both modules must have the same
    structure; names are matched so that a mismatch fails instead of mixing unrelated tensors.

    Args:
        teacher: the averaged network, updated in place.
        student: the trained network, read only.
        momentum: in [0, 1]; 1 keeps the teacher, 0 copies the student.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    t_buffers, s_buffers = dict(teacher.named_buffers()), dict(student.named_buffers())
    if t_params.keys() != s_params.keys() or t_buffers.keys() != s_buffers.keys():
        raise ValueError("teacher and student do not have the same parameters and buffers")
    for name, t in t_params.items():
        t.lerp_(s_params[name].detach(), 1.0 - momentum)
    for name, t in t_buffers.items():
        t.copy_(s_buffers[name])


def cosine_momentum(step: int, total_steps: int, start: float, end: float) -> float:
    """EMA momentum at ``step``: ``start`` at step 0 rising to ``end`` at ``total_steps`` on a half cosine.

    Steps past the end keep ``end``; ``total_steps`` = 0 gives ``end``.
    """
    if total_steps < 0 or step < 0:
        raise ValueError(f"step and total_steps must be >= 0, got {step} and {total_steps}")
    if total_steps == 0:
        return end
    progress = min(step, total_steps) / total_steps
    return end - (end - start) * (1.0 + math.cos(math.pi * progress)) / 2.0
