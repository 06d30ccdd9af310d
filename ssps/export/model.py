"""The module that gets exported: waveform (B, N) -> embedding (B, D), or features -> embedding."""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps.export.frontend import ConvLogMel


class ExportModel(nn.Module):
    """An :class:`ssps.embedder.Embedder` with its front end swapped for :class:`ConvLogMel`.

    Args:
        embedder: the trained Embedder (front end + encoder), in eval mode.
        from_features: export the encoder alone, taking (B, T, n_mels) log-mel features.
    """

    def __init__(self, embedder: nn.Module, from_features: bool = False):
        super().__init__()
        self.features = None if from_features else ConvLogMel(embedder.features)
        self.encoder = embedder.encoder
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) waveforms (or (B, T, n_mels) features) -> (B, D) raw embeddings (not normalised)."""
        if self.features is not None:
            x = self.features(x)
        return self.encoder(x)
