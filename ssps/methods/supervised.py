"""Supervised speaker classification with an additive angular margin (AAM-softmax, ArcFace).

The upper bound the SSL methods are compared with, and the second stage of the pseudo-label chain
(``ssps chain``), where the classes are pseudo-speakers found by clustering. The method only sees class
indices as tensors: the speaker table (name -> index) is built by the data layer
(:mod:`ssps.data.labels`) and the trainer maps each batch's dataset indices to classes.

With ``instance_weight`` > 0 each utterance gives two crops: both are classified, and SimCLR's NT-Xent between
them is added, weighted (a label-free term: it reads no class).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssps.config import SupervisedConfig
from ssps.errors import SSPSError
from ssps.methods import METHODS, embedding_dim
from ssps.methods.base import SingleEmbedderMethod
from ssps.methods.losses import aam_softmax, nt_xent


@METHODS.register("supervised")
class Supervised(SingleEmbedderMethod):
    """An embedder and a (C, D) class-weight matrix scored by cosine; AAM-softmax on top.

    Args:
        embedder: waveform (B, N) -> embedding (B, D) module (:class:`ssps.embedder.Embedder`).
        cfg: the method's settings.
        num_classes: C, the number of speakers (or pseudo-speakers) in the training manifest.
    """

    uses_labels = True  # build_method passes num_classes; the trainer feeds the speaker column

    def __init__(self, embedder: nn.Module, cfg: SupervisedConfig, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise SSPSError(f"method.supervised: expected at least 2 speakers, got {num_classes}")
        if cfg.scale <= 0 or cfg.margin < 0:
            raise SSPSError(
                f"method.supervised: expected scale > 0 and margin >= 0, got {cfg.scale} and {cfg.margin}"
            )
        if cfg.subcenters < 1:
            raise SSPSError(f"method.supervised.subcenters: expected >= 1, got {cfg.subcenters}")
        if cfg.instance_weight < 0 or cfg.instance_temperature <= 0:
            raise SSPSError(
                "method.supervised: expected instance_weight >= 0 and instance_temperature > 0, got "
                f"{cfg.instance_weight} and {cfg.instance_temperature}"
            )
        self.cfg = cfg
        self.embedder = embedder
        # (C * K, D): class c's sub-centers are rows c * K ... c * K + K - 1.
        self.classifier = nn.Parameter(torch.empty(num_classes * cfg.subcenters, embedding_dim(embedder)))
        nn.init.xavier_uniform_(self.classifier)

    def forward(self, wav: torch.Tensor, with_embeddings: bool = False):
        """(B, N) crops -> (B, C) cosines to every class (inside forward, so DDP syncs the classifier); with
        sub-centers, each class's best sub-center. ``with_embeddings`` also returns the (B, D) embeddings."""
        raw = self.embedder(wav)
        emb = F.normalize(raw, dim=1)
        cosine = emb @ F.normalize(self.classifier, dim=1).T
        k = self.cfg.subcenters
        cosine = cosine if k == 1 else cosine.view(cosine.shape[0], -1, k).amax(-1)
        return (cosine, raw) if with_embeddings else cosine

    def loss(
        self,
        cosine: torch.Tensor,
        labels: torch.Tensor,
        margin: float | None = None,
        pair: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """AAM-softmax of (B, C) cosines and (B,) labels -> () loss; ``margin`` defaults to the config's.

        ``pair``: the (B', D) embeddings of two crops of the same B' utterances; their NT-Xent, times
        ``instance_weight``, is added.
        """
        margin = self.cfg.margin if margin is None else margin
        loss = aam_softmax(cosine, labels, margin, self.cfg.scale)
        if pair is not None and self.cfg.instance_weight > 0:
            instance = nt_xent(pair[0], pair[1], self.cfg.instance_temperature)
            loss = loss + self.cfg.instance_weight * instance
        return loss
