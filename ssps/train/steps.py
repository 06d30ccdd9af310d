"""What the loop needs from a method, in one shape for SimCLR, DINO and supervised training.

``forward`` gives (anchors, positives, stored): ``positives`` is what the loss pairs with the anchors,
``stored`` what the SSPS positive queue keeps for it (possibly smaller), and ``from_stored`` turns a stored
entry back into a positive. SSPS then only replaces ``positives``; the methods never change for it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps.config import Config


class SimCLRForward(nn.Module):
    """Views -> (anchor embeddings (B, D), positive embeddings (B, D)). Wrapped in DDP when distributed."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.method.embed(views)
        return z[0], z[1]


class DINOForward(nn.Module):
    """Views -> student logits of every crop. The teacher runs outside (no gradient, not synced)."""

    def __init__(self, method: nn.Module, n_global: int):
        super().__init__()
        self.method = method
        self.n_global = n_global

    def forward(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.method.student_forward(views[: self.n_global], views[self.n_global :])


class SimCLRSteps:
    """SimCLR: anchors = view 1, positives = view 2; the queue stores view-2 embeddings as they are."""

    def __init__(self, method: nn.Module, cfg: Config):
        self.method = method
        self.forward_module = SimCLRForward(method)
        self.temperature = cfg.method.simclr.temperature

    def positive_shape(self, embed_dim: int) -> tuple[int, ...]:
        return (embed_dim,)

    def forward(self, model: nn.Module, views: list[torch.Tensor], index: torch.Tensor | None = None):
        anchors, positives = model(views)
        return anchors, positives, positives.detach()

    def from_stored(self, stored: torch.Tensor) -> torch.Tensor:
        return stored

    def loss(
        self, anchors, positives, teacher_temperature: float, update_center: bool = True, step: int = 0
    ) -> torch.Tensor:
        return self.method.loss(anchors, positives, self.temperature)


class DINOSteps:
    """DINO: anchors = student logits of all crops, positives = teacher logits of the global crops (B, G, K).

    The queue stores the teacher's 256-d bottleneck (``ssps.dino_store=bottleneck``; logits are recomputed
    with the current teacher's last layer when sampled) or the logits themselves.
    """

    def __init__(self, method: nn.Module, cfg: Config):
        self.method = method
        self.n_global = cfg.method.dino.global_crops
        self.forward_module = DINOForward(method, self.n_global)
        self.store = cfg.ssps.dino_store
        self.bottleneck = cfg.method.dino.head_bottleneck
        self.out = cfg.method.dino.head_out

    def positive_shape(self, embed_dim: int) -> tuple[int, ...]:
        return (self.n_global, self.bottleneck if self.store == "bottleneck" else self.out)

    def forward(self, model: nn.Module, views: list[torch.Tensor], index: torch.Tensor | None = None):
        student = model(views)
        logits, bottlenecks = self.method.teacher_forward(views[: self.n_global])
        positives = torch.stack(logits, dim=1)  # (B, G, K)
        stored = torch.stack(bottlenecks, dim=1) if self.store == "bottleneck" else positives
        return student, positives, stored

    @torch.no_grad()
    def from_stored(self, stored: torch.Tensor) -> torch.Tensor:
        if self.store != "bottleneck":
            return stored
        b, g, d = stored.shape
        return self.method.teacher_logits(stored.reshape(b * g, d).float()).reshape(b, g, -1)

    def loss(
        self, anchors, positives, teacher_temperature: float, update_center: bool = True, step: int = 0
    ) -> torch.Tensor:
        targets = [positives[:, g] for g in range(positives.shape[1])]
        return self.method.loss(anchors, targets, teacher_temperature, update_center=update_center)


class SupervisedSteps:
    """Supervised: anchors = (B, C) cosines of the one crop, positives = the (B,) classes of the rows.

    With ``instance_weight`` > 0 there are two crops: anchors = ((2B, C) cosines, (B, D) and (B, D)
    embeddings of each crop), positives = the classes twice.

    ``labels`` (N,) maps a dataset index to its class (the data layer's speaker table); the margin
    follows its warm-up schedule, indexed by the global step like every schedule.
    """

    def __init__(self, method: nn.Module, cfg: Config, labels: torch.Tensor, steps_per_epoch: int):
        from ssps.train.schedules import margin_warmup

        s = cfg.method.supervised
        self.method = method
        self.forward_module = method
        self.labels = labels
        self.margin = margin_warmup(
            s.margin, steps_per_epoch, cfg.train.epochs, s.margin_warmup_start, s.margin_warmup_epochs
        )

    def positive_shape(self, embed_dim: int) -> tuple[int, ...]:
        return (embed_dim,)

    def forward(self, model: nn.Module, views: list[torch.Tensor], index: torch.Tensor | None = None):
        labels = self.labels.to(views[0].device)[index]
        if len(views) == 1:
            return model(views[0]), labels, None
        # Two crops (instance_weight > 0): one forward; anchors = (cosines of both, embeddings of each).
        cosine, emb = model(torch.cat(views[:2]), with_embeddings=True)
        return (cosine, *emb.chunk(2)), labels.repeat(2), None

    def loss(
        self, anchors, positives, teacher_temperature: float, update_center: bool = True, step: int = 0
    ) -> torch.Tensor:
        margin = float(self.margin[min(step, len(self.margin) - 1)])
        if isinstance(anchors, tuple):
            cosine, first, second = anchors
            return self.method.loss(cosine, positives, margin, pair=(first, second))
        return self.method.loss(anchors, positives, margin)


STEPS = {"simclr": SimCLRSteps, "dino": DINOSteps, "supervised": SupervisedSteps}


@torch.no_grad()
def reference_embeddings(method: nn.Module, reference: torch.Tensor) -> torch.Tensor:
    """Clean reference frames (B, N) -> encoder outputs (B, D), in eval mode, without gradient (SSPS.md)."""
    encoder = method.reference_encoder()
    was_training = encoder.training
    encoder.eval()
    emb = encoder(reference)
    encoder.train(was_training)
    return emb.float()
