"""Supervised speaker classification with an additive angular margin (AAM-softmax, ArcFace).

The upper bound the SSL methods are compared with, and the second stage of the pseudo-label chain
(``ssps chain``), where the classes are pseudo-speakers found by clustering. The method only sees class
indices as tensors: the speaker table (name -> index) is built by the data layer
(:mod:`ssps.data.labels`) and the trainer maps each batch's dataset indices to classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssps.config import SupervisedConfig
from ssps.errors import SSPSError
from ssps.methods import METHODS, embedding_dim
from ssps.methods.base import SingleEmbedderMethod
from ssps.methods.losses import aam_softmax


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
        self.cfg = cfg
        self.embedder = embedder
        # (C * K, D): class c's sub-centers are rows c * K ... c * K + K - 1.
        self.classifier = nn.Parameter(torch.empty(num_classes * cfg.subcenters, embedding_dim(embedder)))
        nn.init.xavier_uniform_(self.classifier)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) crops -> (B, C) cosines to every class (inside forward, so DDP syncs the classifier); with
        sub-centers, each class's best sub-center."""
        emb = F.normalize(self.embedder(wav), dim=1)
        cosine = emb @ F.normalize(self.classifier, dim=1).T
        k = self.cfg.subcenters
        return cosine if k == 1 else cosine.view(cosine.shape[0], -1, k).amax(-1)

    def loss(self, cosine: torch.Tensor, labels: torch.Tensor, margin: float | None = None) -> torch.Tensor:
        """AAM-softmax of (B, C) cosines and (B,) labels -> () loss; ``margin`` defaults to the config's."""
        margin = self.cfg.margin if margin is None else margin
        return aam_softmax(cosine, labels, margin, self.cfg.scale)
