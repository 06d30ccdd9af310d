"""Speaker encoders. One contract: features (B, T, F) -> embedding (B, D), always a tensor.

Each module registers its models in ``ENCODERS``; ``build_encoder`` is the only way to make one.
"""

from __future__ import annotations

import torch.nn as nn

from ssps.config import EncoderConfig
from ssps.registry import Registry

ENCODERS = Registry("encoder")


def build_encoder(cfg: EncoderConfig, n_mels: int) -> nn.Module:
    """Make the encoder ``cfg.name``; ``cfg.channels`` = 0 keeps the model's default width."""
    factory = ENCODERS.get(cfg.name)
    kwargs = {"n_mels": n_mels, "embed_dim": cfg.embed_dim}
    if cfg.channels:
        kwargs["channels"] = cfg.channels
    return factory(**kwargs)


# Importing the modules registers their encoders.
from ssps.encoders import ecapa_tdnn, resnet, tdnn  # noqa: E402, F401
