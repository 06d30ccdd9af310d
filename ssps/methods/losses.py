"""SSL losses: tensors in, a scalar tensor out. Temperatures come in as numbers, never from a schedule object.

Positives are explicit arguments, so SSPS hands these losses *other* positives without changing them.

>>> import torch
>>> a, p = torch.randn(8, 16), torch.randn(8, 16)
>>> nt_xent(a, a, 0.1) < nt_xent(a, p, 0.1)
tensor(True)
>>> center = DINOCenter(32)
>>> teacher = [center.softmax(torch.randn(4, 32), 0.04) for _ in range(2)]
>>> student = [torch.randn(4, 32) for _ in range(4)]
>>> dino_loss(student, teacher, 0.1).shape
torch.Size([])
>>> cos = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
>>> aam_softmax(cos, torch.tensor([0, 1]), 0.2, 30.0) > aam_softmax(cos, torch.tensor([0, 1]), 0.0, 30.0)
tensor(True)
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssps import dist


def _fp32(x: torch.Tensor) -> torch.Tensor:
    """Half precision up to float32 (softmax at temperature 0.04 overflows it); float64 stays."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def outside_autocast(loss_fn):
    """Run a loss with autocast off on every device, so its matmuls stay in float32 after ``_fp32``.

    Inside autocast a float32 matmul still runs in bf16: SimCLR logits at temperature 0.03 would then sit
    on a 0.125-0.25 grid. The encoder may train in bf16 (``train.amp``); the loss never does.
    """

    @functools.wraps(loss_fn)
    def wrapper(*args, **kwargs):
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return loss_fn(*args, **kwargs)

    return wrapper


@outside_autocast
def nt_xent(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    temperature: float,
    gather: bool = True,
    same_view_negatives: bool = True,
) -> torch.Tensor:
    """Normalised-temperature cross entropy (SimCLR), symmetric in anchors and positives.

    Row i of the anchors matches row i of the positives. With ``same_view_negatives`` (SimCLR's and the
    SSPS reference's form) the 2N embeddings all contrast with each other: each one's target is its
    partner and the other 2N - 2 are negatives. Without it, anchor i's negatives are the other
    positives (and positive i's the other anchors), as in CLIP. Either way the loss is the mean of the
    anchor -> positive and positive -> anchor cross entropies.

    When distributed and ``gather`` is set, anchors and positives are gathered from every rank with
    gradient, so every rank computes the loss of the whole global batch, equal to what one process
    would compute on it. All ranks must then call it with the same shapes and the same
    ``requires_grad`` on their inputs.

    Args:
        anchors: (N, D) embeddings, not necessarily normalised.
        positives: (N, D) embeddings; may be detached (SSPS stored positives).
        temperature: softmax temperature, > 0.
        gather: gather the batch across ranks (no effect in one process).
        same_view_negatives: also contrast anchors with anchors and positives with positives.

    Returns:
        () mean loss over the 2N (global) rows.
    """
    if anchors.shape != positives.shape or anchors.dim() != 2:
        raise ValueError(
            f"expected two (N, D) tensors, got {tuple(anchors.shape)} and {tuple(positives.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a = F.normalize(_fp32(anchors), dim=1)
    p = F.normalize(_fp32(positives), dim=1)
    if gather and dist.world_size() > 1:
        # One collective for both halves: (N, 2D) -> (W*N, 2D), in rank order like the global batch.
        d = a.shape[1]
        both = dist.gather_with_grad(torch.cat([a, p], dim=1))
        a, p = both[:, :d], both[:, d:]
    n = a.shape[0]
    if same_view_negatives:
        z = torch.cat([a, p])  # (2N, D)
        logits = z @ z.T / temperature  # (2N, 2N)
        # An embedding is not its own negative.
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        # Row i's partner: i + n for an anchor, i - n for a positive.
        targets = torch.arange(2 * n, device=z.device).roll(n)
        return F.cross_entropy(logits, targets)
    logits = a @ p.T / temperature  # (N, N): rows anchor -> positives, columns positive -> anchors
    targets = torch.arange(n, device=a.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@outside_autocast
def dino_loss(
    student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor], student_temperature: float
) -> torch.Tensor:
    """DINO cross entropy between every teacher target and every student crop of another view.

    The student crops come globals first, in the teacher's order, so the pair (teacher i, student i)
    is the same global crop seen by both networks and is skipped.

    Args:
        student_logits: V tensors (B, K), the student's logits of every crop (globals first).
        teacher_probs: G tensors (B, K), the centred and sharpened teacher distributions of the G global
            crops (:meth:`DINOCenter.softmax`), or SSPS replacements of them.
        student_temperature: temperature of the student softmax.

    Returns:
        () loss averaged over the G * V - G pairs (each pair averaged over the batch).
    """
    n_global = len(teacher_probs)
    if n_global > len(student_logits) or len(student_logits) < 2:
        raise ValueError(
            f"need at least 2 student crops and no more teacher targets than crops, got "
            f"{len(student_logits)} student and {n_global} teacher tensors"
        )
    if any(s.shape != teacher_probs[0].shape for s in [*student_logits, *teacher_probs]):
        raise ValueError("student logits and teacher probabilities must all have the same (B, K) shape")
    student_logp = [F.log_softmax(_fp32(s) / student_temperature, dim=-1) for s in student_logits]
    total = student_logp[0].new_zeros(())
    pairs = 0
    for i, q in enumerate(teacher_probs):
        for j, logp in enumerate(student_logp):
            if i == j:
                continue
            total = total + torch.sum(-_fp32(q) * logp, dim=-1).mean()
            pairs += 1
    return total / pairs


@outside_autocast
def aam_softmax(cosine: torch.Tensor, labels: torch.Tensor, margin: float, scale: float) -> torch.Tensor:
    """Additive angular margin softmax (ArcFace): cross entropy of ``scale * cos(theta_y + margin)`` for the
    target class and ``scale * cos(theta_j)`` for the others.

    Where ``theta_y + margin`` would pass pi, cos would rise again; there the target logit continues as
    ``cos(theta_y) - margin * sin(margin)`` (monotone in theta, as in WeSpeaker and InsightFace).

    Args:
        cosine: (B, C) cosine between each normalised embedding and each normalised class weight.
        labels: (B,) long class of each row.
        margin: m in radians, >= 0 (a schedule value: the warm-up passes the current one).
        scale: s > 0.

    Returns:
        () mean cross entropy over the batch.
    """
    if cosine.dim() != 2 or labels.shape != cosine.shape[:1]:
        raise ValueError(
            f"expected (B, C) cosines and (B,) labels, got {tuple(cosine.shape)}, {tuple(labels.shape)}"
        )
    if margin < 0 or scale <= 0:
        raise ValueError(f"margin must be >= 0 and scale > 0, got {margin} and {scale}")
    cos = _fp32(cosine).clamp(-1 + 1e-7, 1 - 1e-7)
    target = cos.gather(1, labels[:, None])  # (B, 1)
    sin = torch.sqrt(1 - target * target)
    shifted = target * math.cos(margin) - sin * math.sin(margin)  # cos(theta + m)
    shifted = torch.where(target > math.cos(math.pi - margin), shifted, target - margin * math.sin(margin))
    logits = cos.scatter(1, labels[:, None], shifted) * scale
    return F.cross_entropy(logits, labels)


class DINOCenter(nn.Module):
    """The running mean of the teacher logits, subtracted before the teacher softmax to avoid collapse.

    The update averages over the global batch (all ranks), so the buffer stays identical on every rank.

    Args:
        dim: K, the number of prototypes (the head's output size).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("center", torch.zeros(1, dim))  # (1, K)

    @outside_autocast
    def softmax(self, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        """(B, K) teacher logits -> (B, K) probabilities softmax((logits - center) / temperature)."""
        return F.softmax((_fp32(logits) - self.center) / temperature, dim=-1)

    @outside_autocast
    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor, momentum: float) -> None:
        """center <- momentum * center + (1 - momentum) * mean of the (M, K) logits over all ranks."""
        logits = teacher_logits.to(self.center.dtype)
        # Sum and count reduced together: exact global mean even when ranks hold different batch sizes.
        stats = torch.cat([logits.sum(dim=0), logits.new_tensor([logits.shape[0]])])
        stats = dist.all_reduce_mean(stats)
        batch_center = (stats[:-1] / stats[-1]).unsqueeze(0)  # (1, K)
        self.center.mul_(momentum).add_(batch_center, alpha=1 - momentum)
