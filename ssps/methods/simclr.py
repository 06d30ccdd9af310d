"""SimCLR for speaker verification: two crops of one utterance are the anchor and the positive.

The loss is NT-Xent on (anchor, positive) embeddings with negatives from the whole global batch; SSPS
replaces the positives with stored embeddings of other utterances and calls the same :meth:`SimCLR.loss`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps.config import SimCLRConfig
from ssps.errors import SSPSError
from ssps.methods import METHODS, embedding_dim
from ssps.methods.base import SingleEmbedderMethod
from ssps.methods.heads import projector
from ssps.methods.losses import nt_xent


def embed_crops(model: nn.Module, crops: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run ``model`` once per run of consecutive equal-length crops and split the result back.

    Args:
        model: (B', N) -> (B', ...) module.
        crops: V tensors (B, N_v).

    Returns:
        V tensors (B, ...), in the order of ``crops``.
    """
    out: list[torch.Tensor] = []
    start = 0
    while start < len(crops):
        end = start
        while end < len(crops) and crops[end].shape == crops[start].shape:
            end += 1
        # (V', B, N) -> (V'*B, N): one forward for same-size crops.
        out += list(model(torch.cat(crops[start:end])).chunk(end - start))
        start = end
    return out


@METHODS.register("simclr")
class SimCLR(SingleEmbedderMethod):
    """SimCLR: an online embedder, an optional projector, and NT-Xent.

    Args:
        embedder: waveform (B, N) -> embedding (B, D) module (:class:`ssps.embedder.Embedder`).
        cfg: the method's settings.
    """

    def __init__(self, embedder: nn.Module, cfg: SimCLRConfig):
        super().__init__()
        if cfg.temperature <= 0:
            raise SSPSError(f"method.simclr.temperature: expected a number > 0, got {cfg.temperature}")
        if any(d <= 0 for d in cfg.projector_dims):
            raise SSPSError(
                f"method.simclr.projector_dims: expected positive sizes, got {list(cfg.projector_dims)}"
            )
        self.cfg = cfg
        self.embedder = embedder
        self.projector = projector(embedding_dim(embedder), cfg.projector_dims)

    def embed(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Embed each view with gradient (call ``.train()`` first for training).

        Args:
            views: V waveform batches (B, N_v); views of equal length share one forward.

        Returns:
            V tensors (B, D'), the projector's output (the embedding when there is no projector).
        """
        return embed_crops(lambda wav: self.projector(self.embedder(wav)), views)

    def forward(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Same as :meth:`embed`; call the module itself when it is wrapped in DistributedDataParallel."""
        return self.embed(views)

    def loss(
        self, anchors: torch.Tensor, positives: torch.Tensor, temperature: float | None = None
    ) -> torch.Tensor:
        """NT-Xent of (N, D') anchors and positives (possibly SSPS's detached ones) -> () loss."""
        temperature = self.cfg.temperature if temperature is None else temperature
        return nt_xent(anchors, positives, temperature, same_view_negatives=self.cfg.same_view_negatives)
