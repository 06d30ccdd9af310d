"""BatchNorm over the global batch (``train.sync_batchnorm``, on in the paper) on every device.

torch's ``nn.SyncBatchNorm`` runs only on accelerators; on CPU (gloo) the same statistics come from two
differentiable all-reduces per layer: the global mean, then the global mean squared deviation (two passes,
as precise as one-process BatchNorm). In one process, or in eval mode, it is plain BatchNorm.

>>> import torch.nn as nn
>>> net = convert_sync_batchnorm(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)), torch.device("cpu"))
>>> type(net[1]).__name__, net(torch.randn(5, 4)).shape
('GlobalBatchNorm', torch.Size([5, 8]))
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps import dist


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the batch of every rank; any input (B, C, ...)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (B, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and dist.world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        count = x.new_tensor([x.numel() // x.shape[1]], dtype=torch.float32)
        # Sums and counts reduced with gradient: each rank's rows influence every rank's normalisation.
        stats = dist.all_reduce_with_grad(torch.cat([x.float().sum(dims), count]))
        n = stats[-1]
        mean = stats[:-1] / n
        centred = x.float() - mean.view(shape)
        var = dist.all_reduce_with_grad(centred.square().sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        out = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        # The same Parameter and buffer objects (as torch's conversion): requires_grad (a frozen DINO
        # teacher), devices and any optimizer references carry over.
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer of ``module`` normalised over the global batch (torch's on CUDA)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


__all__ = ["GlobalBatchNorm", "convert_sync_batchnorm"]
