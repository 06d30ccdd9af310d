"""What the single-embedder methods (SimCLR, supervised) share: one embedder trained end to end, nothing
frozen at the start, per-parameter gradient clipping, no per-step state."""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps.methods import clip_per_parameter, param_groups


class SingleEmbedderMethod(nn.Module):
    """Mixin for methods whose ``self.embedder`` is both the evaluation and the SSPS reference encoder."""

    embedder: nn.Module

    def reference_encoder(self) -> nn.Module:
        """The online embedder (no projector or classifier); SSPS runs it in eval mode under no_grad."""
        return self.embedder

    def eval_embedder(self) -> nn.Module:
        """The embedder whose weights give evaluation embeddings (and go into checkpoints)."""
        return self.embedder

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer groups "decay" and "no_decay" (1-D parameters); see :func:`ssps.methods.param_groups`."""
        return param_groups(self.named_parameters(), weight_decay)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """No layer is frozen at the start of training."""
        return []

    def clip_gradients(self, max_norm: float) -> torch.Tensor:
        """Per-parameter gradient-norm clip; returns the (P,) norms before clipping."""
        return clip_per_parameter(self.parameters(), max_norm)

    def on_step(self, step: int, total_steps: int) -> None:
        """No per-step state (schedules such as the AAM margin warm-up are passed to ``loss``)."""
