"""Heads put on top of an embedder: the SimCLR projector and the DINO head.

>>> import torch
>>> head = DINOHead(64, hidden=32, bottleneck=16, out=100)
>>> x = torch.randn(5, 64)
>>> head(x).shape, head.bottleneck(x).shape
(torch.Size([5, 100]), torch.Size([5, 16]))
>>> torch.allclose(head(x), head.last_layer(head.bottleneck(x)))
True
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm


def projector(in_dim: int, dims: tuple[int, ...]) -> nn.Module:
    """SimCLR projector: Linear -> BatchNorm -> ReLU between layers, a plain Linear last.

    Args:
        in_dim: embedding size D of the encoder.
        dims: output size of each layer; empty gives the identity (the paper's SimCLR has no projector).

    Returns:
        A module (B, in_dim) -> (B, dims[-1]).
    """
    if not dims:
        return nn.Identity()
    layers: list[nn.Module] = []
    sizes = (in_dim, *dims)
    for i in range(len(dims)):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(dims) - 1:
            layers += [nn.BatchNorm1d(sizes[i + 1]), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """3-layer MLP (Linear -> BatchNorm -> GELU twice, then Linear) -> L2-normalised bottleneck ->
    weight-normalised linear without bias. BatchNorm after both hidden layers as in the SSPS reference
    (sslsv's DINO head, ``use_bn=True``).

    The last layer's magnitude (``weight_g``) is fixed to 1, so each of the ``out`` logits is a cosine
    between the bottleneck and a learned prototype direction. Splitting the forward into
    :meth:`bottleneck` and :meth:`last_layer` lets SSPS store the small bottleneck and recompute logits.

    Args:
        in_dim: embedding size D of the encoder.
        hidden: width of the two hidden layers.
        bottleneck: size of the normalised bottleneck.
        out: K, the number of prototypes.
    """

    def __init__(self, in_dim: int, hidden: int = 2048, bottleneck: int = 256, out: int = 65536):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                # DINO's initialisation: small truncated-normal weights, zero biases.
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.prototypes = weight_norm(nn.Linear(bottleneck, out, bias=False))
        with torch.no_grad():
            self.weight_g.fill_(1.0)
        self.weight_g.requires_grad_(False)

    @property
    def weight_g(self) -> torch.Tensor:
        """(K, 1) magnitudes of the prototypes; frozen at 1."""
        return self.prototypes.parametrizations.weight.original0

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) embeddings -> (B, bottleneck) L2-normalised bottleneck."""
        return F.normalize(self.mlp(x), dim=-1)

    def last_layer(self, z: torch.Tensor) -> torch.Tensor:
        """(B, bottleneck) normalised bottleneck (any float dtype, e.g. a stored float16) -> (B, K) logits."""
        return self.prototypes(z.to(self.weight_g.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, K) logits."""
        return self.last_layer(self.bottleneck(x))
