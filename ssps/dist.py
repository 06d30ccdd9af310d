"""Distributed helpers. Every function is a no-op (or the identity) in a single process.

Launch with ``torchrun --nproc_per_node N -m ssps train ...``; one process needs no launcher.
"""

from __future__ import annotations

import datetime
import os
import re

import torch
import torch.distributed as torch_dist


def is_dist() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def rank() -> int:
    return torch_dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return torch_dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def init(timeout_s: float = 300.0) -> torch.device:
    """Initialise the process group when launched by torchrun; return this rank's device."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not is_dist():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch_dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


# Transport errors that a collective raises when a peer died or stopped answering. gloo reports them as a
# plain RuntimeError ("Read error ... Connection reset by peer", "Connection closed by peer", "Timed out
# waiting ..."), not always as torch.distributed.DistError, so the message is what tells them apart.
_PEER_FAILURE_MARKERS = (
    "connection reset",
    "connection closed",
    "connection refused",
    "broken pipe",
    "timed out",
    "timeout",
    "gloo/transport",
    "nccl",
)


def is_peer_failure(error: BaseException) -> bool:
    """True if ``error`` (raised while distributed) means another rank died or the network failed."""
    if not is_dist():
        return False
    if isinstance(error, torch_dist.DistError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(marker in text for marker in _PEER_FAILURE_MARKERS)


def failure_reason(error: BaseException) -> str:
    """The transport's reason on one short line (gloo prefixes a source location and appends advice)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else type(error).__name__
    return text.split(". ")[0][:160]


def shutdown() -> None:
    if is_dist():
        torch_dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        torch_dist.barrier()


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (no gradient). Shapes must match across ranks."""
    if not is_dist():
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    torch_dist.all_gather(out, x.contiguous())
    return torch.cat(out)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = [torch.empty_like(x) for _ in range(world_size())]
        torch_dist.all_gather(out, x.contiguous())
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # Every rank computed the loss over the full gathered batch: sum their gradients, keep our slice.
        grad = grad.contiguous()
        torch_dist.all_reduce(grad)
        n = grad.shape[0] // world_size()
        return grad[rank() * n : (rank() + 1) * n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather`, but gradients flow back to each rank's own slice."""
    if not is_dist():
        return x
    return _GatherWithGrad.apply(x)


class _AllReduceWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = x.clone()
        torch_dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # Every rank's output depends on every rank's input: sum the gradients that flow back.
        grad = grad.clone()
        torch_dist.all_reduce(grad)
        return grad


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks, differentiable (e.g. BatchNorm statistics of the global batch)."""
    if not is_dist():
        return x
    return _AllReduceWithGrad.apply(x)


def all_true(flag: bool) -> bool:
    """True on every rank iff ``flag`` is true on every rank (one all-reduce; no-op in one process).

    For decisions that must be the same everywhere, e.g. skipping a step: a rank that skipped alone
    would miss the gradient all-reduce and the queue all-gathers of the others.
    """
    if not is_dist():
        return flag
    x = torch.tensor([int(flag)], dtype=torch.int32)
    if torch_dist.get_backend() == "nccl":
        x = x.cuda()
    torch_dist.all_reduce(x, op=torch_dist.ReduceOp.MIN)
    return bool(x.item())


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if not is_dist():
        return x
    x = x.clone()
    torch_dist.all_reduce(x)
    return x / world_size()


def broadcast(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    if is_dist():
        torch_dist.broadcast(x, src)
    return x
