"""Temporal pooling: frame-level features (B, C, T) -> utterance statistics (B, 2C).

Every pooling here returns the (optionally attention-weighted) mean and standard deviation over time,
concatenated, so encoders can accept any number of frames. ``mask`` (B, 1, T) bool marks the valid frames
of a zero-padded batch (None: all valid): padded frames get zero weight, so a padded row pools as alone.

>>> import torch
>>> StatsPool()(torch.randn(2, 8, 30)).shape
torch.Size([2, 16])
>>> AttentiveStatsPool(8, attention_channels=4)(torch.randn(2, 8, 30)).shape
torch.Size([2, 16])
>>> SelfAttentiveStatsPool(8)(torch.randn(2, 8, 30)).shape
torch.Size([2, 16])
"""

from __future__ import annotations

import torch
import torch.nn as nn

VAR_FLOOR = 1e-5  # keeps sqrt differentiable on constant channels


def weighted_stats(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean and std over time, computed in float32 so half-precision training stays stable.

    Args:
        x: (B, C, T) features.
        weights: (B, C, T) or (B, 1, T) non-negative weights that sum to 1 over T.

    Returns:
        (B, 2C) concatenated mean and std.
    """
    x, weights = x.float(), weights.float()
    mean = (weights * x).sum(dim=-1)  # (B, C)
    var = (weights * (x - mean.unsqueeze(-1)).square()).sum(dim=-1)
    return torch.cat([mean, var.clamp(min=VAR_FLOOR).sqrt()], dim=1)


def length_mask(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B,) valid frames -> (B, 1, T) bool mask."""
    return (torch.arange(num_frames, device=lengths.device)[None] < lengths[:, None])[:, None]


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, C, T) -> (B, C, 1) mean over the valid frames."""
    if mask is None:
        return x.mean(dim=-1, keepdim=True)
    return (x * mask).sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True)


def _uniform(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is None:
        return torch.full_like(x[:, :1], 1.0 / x.shape[-1])  # (B, 1, T)
    m = mask.to(x.dtype)
    return m / m.sum(dim=-1, keepdim=True)


def _softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    scores = scores.float()
    return torch.softmax(scores if mask is None else scores.masked_fill(~mask, -float("inf")), dim=-1)


class StatsPool(nn.Module):
    """Plain mean and std over time (x-vector statistics pooling)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, 2C)."""
        return weighted_stats(x, _uniform(x, mask))


class AttentiveStatsPool(nn.Module):
    """ECAPA-TDNN's channel-wise attentive statistics pooling (Desplanques et al. 2020).

    Each channel gets its own softmax over time. With ``global_context`` the attention also sees the
    utterance's mean and std, so it can weigh a frame against the whole recording.

    Args:
        channels: C, the frame-level feature size.
        attention_channels: width of the attention bottleneck.
        global_context: concatenate utterance mean and std to every frame before scoring it.
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True):
        super().__init__()
        self.global_context = global_context
        in_channels = 3 * channels if global_context else channels
        self.attention = nn.Sequential(
            nn.Conv1d(in_channels, attention_channels, kernel_size=1),
            nn.ReLU(),
            nn.BatchNorm1d(attention_channels),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, 2C)."""
        scores_in = x
        if self.global_context:
            stats = weighted_stats(x, _uniform(x, mask)).to(x.dtype)  # (B, 2C): mean, std
            scores_in = torch.cat([x, stats.unsqueeze(-1).expand(-1, -1, x.shape[-1])], dim=1)  # (B, 3C, T)
        weights = _softmax(self.attention(scores_in), mask)  # (B, C, T)
        return weighted_stats(x, weights)


class SelfAttentiveStatsPool(nn.Module):
    """Self-attentive pooling (the Fast ResNet-34's SAP, or ASP with ``stats``): one softmax over time
    shared by all channels, scored by ``v^T tanh(W h_t + b)``.

    Args:
        channels: C, the frame-level feature size.
        stats: return the weighted mean and std (B, 2C); false: the weighted mean only (B, C), the SAP of
            the SSPS reference's thin ResNet-34.
    """

    def __init__(self, channels: int, stats: bool = True):
        super().__init__()
        self.stats = stats
        self.linear = nn.Linear(channels, channels)
        self.context = nn.Parameter(torch.empty(channels, 1))
        nn.init.xavier_normal_(self.context)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, 2C), or (B, C) without ``stats``; ``mask`` (B, T) marks the valid frames."""
        h = torch.tanh(self.linear(x.transpose(1, 2)))  # (B, T, C)
        scores = (h @ self.context.to(h.dtype)).transpose(1, 2)  # (B, 1, T)
        pooled = weighted_stats(x, _softmax(scores, mask))
        return pooled if self.stats else pooled[:, : x.shape[1]]
