"""ECAPA-TDNN (Desplanques et al. 2020).

Conv1d-ReLU-BN, three SE-Res2Blocks (kernel 3, dilations 2/3/4, scale 8), multi-layer feature
aggregation (MFA: the three block outputs concatenated, 1x1 conv to 3C channels, i.e. 1536 at C = 512
and 3072 at C = 1024 as in the SSPS/sslsv C = 1024 model), attentive statistics pooling with global
context, BN and a linear embedding layer.

>>> import torch
>>> model = ecapa_tdnn(n_mels=40, embed_dim=32, channels=64).eval()
>>> model(torch.randn(2, 50, 40)).shape
torch.Size([2, 32])
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps.encoders import ENCODERS
from ssps.encoders.pooling import AttentiveStatsPool, length_mask, masked_mean
from ssps.errors import SSPSError

SCALE = 8  # Res2Net scale: the block's channels are split into 8 groups
SE_CHANNELS = 128
ATTENTION_CHANNELS = 128


def conv_relu_bn(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    """A "TDNN block": same-length dilated Conv1d, then ReLU and BatchNorm (the paper's order)."""
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2),
        nn.ReLU(),
        nn.BatchNorm1d(out_channels),
    )


class Res2Conv(nn.Module):
    """Res2Net's hierarchical convs: group i sees group i plus the output of group i - 1."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int = SCALE):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(conv_relu_bn(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, C, T); ``mask`` (B, 1, T): valid frames (padding is zeroed before each conv)."""
        groups = x.chunk(self.scale, dim=1)
        out = [groups[0]]  # the first group passes unchanged
        y = None
        for conv, g in zip(self.convs, groups[1:], strict=True):
            y = conv(g if y is None else g + y)
            if mask is not None:
                y = y * mask
            out.append(y)
        return torch.cat(out, dim=1)


class SqueezeExcite1d(nn.Module):
    """Channel gates from the time-averaged activations."""

    def __init__(self, channels: int, bottleneck: int = SE_CHANNELS):
        super().__init__()
        self.gate = nn.Sequential(
            nn.Conv1d(channels, bottleneck, 1), nn.ReLU(), nn.Conv1d(bottleneck, channels, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, C, T); the gate averages the valid frames only."""
        return x * self.gate(masked_mean(x, mask))


class SERes2Block(nn.Module):
    """1x1 conv, Res2 dilated convs, 1x1 conv, SE gate, plus the identity shortcut."""

    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_relu_bn(channels, channels),
            Res2Conv(channels, kernel, dilation),
            conv_relu_bn(channels, channels),
            SqueezeExcite1d(channels),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, C, T); with ``mask`` the input's padding must be zero, and so is the output's."""
        if mask is None:
            return x + self.body(x)
        conv_in, res2, conv_out, se = self.body
        h = res2(conv_in(x) * mask, mask)
        return (x + se(conv_out(h), mask)) * mask


class ECAPATDNN(nn.Module):
    """ECAPA-TDNN encoder.

    Args:
        n_mels: F, input feature size.
        embed_dim: D, embedding size.
        channels: C, the width of the SE-Res2Blocks (a multiple of 8).
    """

    def __init__(self, n_mels: int, embed_dim: int = 512, channels: int = 1024):
        super().__init__()
        self.stem = conv_relu_bn(n_mels, channels, kernel=5)
        self.blocks = nn.ModuleList(SERes2Block(channels, 3, dilation) for dilation in (2, 3, 4))
        mfa_channels = 3 * channels
        self.mfa = conv_relu_bn(3 * channels, mfa_channels)
        self.pool = AttentiveStatsPool(mfa_channels, ATTENTION_CHANNELS, global_context=True)
        self.pool_norm = nn.BatchNorm1d(2 * mfa_channels)
        self.embed = nn.Linear(2 * mfa_channels, embed_dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, F) features -> (B, D) embeddings; ``lengths`` (B,): valid frames of a zero-padded batch
        (padding is zeroed before every convolution that reaches across frames, as a row alone sees it)."""
        x = feats.transpose(1, 2)  # (B, F, T)
        mask = None if lengths is None else length_mask(lengths, x.shape[-1])
        h = self.stem(x if mask is None else x * mask)  # (B, C, T)
        if mask is not None:
            h = h * mask
        outputs = []
        for block in self.blocks:
            h = block(h, mask)
            outputs.append(h)
        h = self.mfa(torch.cat(outputs, dim=1))  # (B, 3C, T)
        return self.embed(self.pool_norm(self.pool(h, mask)))


def _build(n_mels: int, embed_dim: int, channels: int) -> nn.Module:
    if channels <= 0 or channels % SCALE:
        raise SSPSError(f"encoder.channels: ECAPA-TDNN needs a positive multiple of {SCALE}, got {channels}")
    return ECAPATDNN(n_mels, embed_dim, channels)


@ENCODERS.register("ecapa_tdnn")
def ecapa_tdnn(n_mels: int, embed_dim: int = 512, channels: int = 1024) -> nn.Module:
    return _build(n_mels, embed_dim, channels)


@ENCODERS.register("ecapa_tdnn_512")
def ecapa_tdnn_512(n_mels: int, embed_dim: int = 512, channels: int = 512) -> nn.Module:
    return _build(n_mels, embed_dim, channels)
