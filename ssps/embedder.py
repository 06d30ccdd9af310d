"""The evaluation model: waveform (B, N) -> log-mel features -> encoder -> embedding (B, D)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps.audio.features import LogMelFrontEnd
from ssps.config import Config
from ssps.encoders import build_encoder


class Embedder(nn.Module):
    """Front end and encoder; what every checkpoint's ``embedder`` weights load into."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.features = LogMelFrontEnd.from_config(cfg.features)
        self.encoder = build_encoder(cfg.encoder, cfg.features.n_mels)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) samples at the configured rate -> (B, D) embeddings (not normalised).

        ``lengths`` (B,): valid samples of each row of a zero-padded batch; each row's embedding then
        equals the row's alone (within float rounding; tests/test_batched_embed.py).
        """
        if lengths is None:
            return self.encoder(self.features(wav))
        return self.encoder(self.features(wav, lengths), self.features.frame_lengths(lengths))
