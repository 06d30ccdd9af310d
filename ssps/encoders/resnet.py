"""The thin "Fast ResNet-34" (Chung et al. 2020): 2-D residual convs over (frequency, time).

Basic blocks [3, 4, 6, 3] of widths w, 2w, 4w, 8w (w = 16 by default), each with a squeeze-and-
excitation gate; frequency is downsampled 8x and time 4x, the remaining frequency bins are averaged,
then self-attentive (mean) pooling over time and a linear embedding layer: 1.44 M parameters at w = 16.

>>> import torch
>>> model = resnet34_thin(n_mels=40, embed_dim=64, channels=4).eval()
>>> model(torch.randn(2, 50, 40)).shape
torch.Size([2, 64])
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps.encoders import ENCODERS
from ssps.encoders.pooling import SelfAttentiveStatsPool, length_mask
from ssps.errors import SSPSError

BLOCKS = (3, 4, 6, 3)
SE_REDUCTION = 8


class SqueezeExcite2d(nn.Module):
    """Channel gates from the (freq, time)-averaged activations."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, F, T) -> (B, C, F, T); ``mask`` (B, 1, 1, T): the gate averages the valid frames only."""
        if mask is None:
            return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]
        mean = (x * mask).sum(dim=(2, 3)) / (mask.sum(dim=(2, 3)) * x.shape[2])
        return x * self.gate(mean)[:, :, None, None]


class SEBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN-SE, plus a (projected when the shape changes) shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            SqueezeExcite2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """(B, C, F, T) -> (B, C', F', T'). With ``lengths`` (B,) valid frames (the input's padding zero):
        returns (output with zero padding, output lengths)."""
        if lengths is None:
            return torch.relu(self.body(x) + self.shortcut(x))
        conv1, bn1, relu, conv2, bn2, se = self.body
        h = relu(bn1(conv1(x)))
        stride = conv1.stride[1]
        lengths = torch.div(lengths + stride - 1, stride, rounding_mode="floor")  # ceil: k = 3, padding 1
        mask = length_mask(lengths, h.shape[-1])[:, :, None]  # (B, 1, 1, T')
        h = se(bn2(conv2(h * mask)), mask)
        return torch.relu(h + self.shortcut(x)) * mask, lengths


class ThinResNet34(nn.Module):
    """Fast ResNet-34 with SE blocks and self-attentive statistics pooling.

    Args:
        n_mels: F, input feature size.
        embed_dim: D, embedding size.
        channels: base width w (stages are w, 2w, 4w, 8w).
    """

    def __init__(self, n_mels: int, embed_dim: int = 512, channels: int = 16):
        super().__init__()
        # 7x7 stem, stride 2 in frequency only: time resolution is kept for the pooling.
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, 7, stride=(2, 1), padding=3, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        stages = []
        in_channels = channels
        for i, (blocks, stride) in enumerate(zip(BLOCKS, (1, 2, 2, 1), strict=True)):
            out_channels = channels * 2**i
            layers = [SEBasicBlock(in_channels, out_channels, stride)]
            layers += [SEBasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        # Self-attentive mean pooling, 8w -> D, as the SSPS reference: 1,437,078 parameters at w = 16.
        self.pool = SelfAttentiveStatsPool(in_channels, stats=False)
        self.embed = nn.Linear(in_channels, embed_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, F) features -> (B, D) embeddings; ``lengths`` (B,): valid frames of a zero-padded batch
        (padding is zeroed before every convolution, as a row alone sees it)."""
        if lengths is None:
            h = self.stages(
                self.stem(feats.transpose(1, 2).unsqueeze(1))
            )  # (B, 1, F, T) -> (B, 8w, F/8, T/4)
            return self.embed(self.pool(h.mean(dim=2)))  # average the remaining frequency bins
        mask = length_mask(lengths, feats.shape[1])[:, :, None]  # (B, 1, 1, T)
        h = self.stem(feats.transpose(1, 2).unsqueeze(1) * mask) * mask
        for stage in self.stages:
            for block in stage:
                h, lengths = block(h, lengths)
        return self.embed(self.pool(h.mean(dim=2), length_mask(lengths, h.shape[-1])))


@ENCODERS.register("resnet34_thin")
def resnet34_thin(n_mels: int, embed_dim: int = 512, channels: int = 16) -> nn.Module:
    if channels <= 0:
        raise SSPSError(f"encoder.channels: expected a positive base width for resnet34_thin, got {channels}")
    return ThinResNet34(n_mels, embed_dim, channels)
