"""A small x-vector-style TDNN: the fast CPU encoder for tiny configs and tests.

Five dilated 1-D convolutions over time (kernel/dilation 5/1, 3/2, 3/3, 1/1, 1/1; no padding, as in
the x-vector, so the receptive field is 15 frames), each followed by ReLU and BatchNorm, then mean and
std pooling, BatchNorm over the pooled statistics and a linear embedding layer.

>>> import torch
>>> model = tdnn(n_mels=40, embed_dim=64, channels=32).eval()
>>> model(torch.randn(3, 60, 40)).shape
torch.Size([3, 64])
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps.encoders import ENCODERS
from ssps.encoders.pooling import StatsPool, length_mask
from ssps.errors import SSPSError

LAYERS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))  # (kernel, dilation) per frame-level layer


class TDNN(nn.Module):
    """Frame-level TDNN + statistics pooling + linear.

    Args:
        n_mels: F, input feature size.
        embed_dim: D, embedding size.
        channels: width of every frame-level layer.
    """

    def __init__(self, n_mels: int, embed_dim: int = 512, channels: int = 128):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = n_mels
        for kernel, dilation in LAYERS:
            layers += [
                nn.Conv1d(in_channels, channels, kernel_size=kernel, dilation=dilation),
                nn.ReLU(),
                nn.BatchNorm1d(channels),
            ]
            in_channels = channels
        self.frames = nn.Sequential(*layers)
        self.min_frames = 1 + sum((k - 1) * d for k, d in LAYERS)
        self.pool = StatsPool()
        # Standard deviations are positive and alike for every utterance: without this norm the
        # embeddings share one dominant direction (pairwise cosine ~0.97 at init), which DINO's teacher
        # cannot escape (it collapsed to a constant output on the built-in corpus).
        self.pool_norm = nn.BatchNorm1d(2 * channels)
        self.embed = nn.Linear(2 * channels, embed_dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, F) features, T >= 15 -> (B, D) embeddings; ``lengths`` (B,): valid frames of a padded batch
        (the unpadded convolutions never mix a row's frames with its padding; the pooling skips it)."""
        shortest = feats.shape[1] if lengths is None else int(lengths.min())
        if shortest < self.min_frames:
            raise ValueError(f"TDNN needs at least {self.min_frames} frames, got {shortest}")
        h = self.frames(feats.transpose(1, 2))  # (B, F, T) -> (B, C, T - 14)
        mask = None if lengths is None else length_mask(lengths - (self.min_frames - 1), h.shape[-1])
        return self.embed(self.pool_norm(self.pool(h, mask)))


@ENCODERS.register("tdnn")
def tdnn(n_mels: int, embed_dim: int = 512, channels: int = 128) -> nn.Module:
    if channels <= 0:
        raise SSPSError(f"encoder.channels: expected a positive width for tdnn, got {channels}")
    return TDNN(n_mels, embed_dim, channels)
