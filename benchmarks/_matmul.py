"""This machine's plain float32 matmul rate, printed beside each benchmark's own figure.

A benchmark's effective GFLOP/s only means something next to what one bare matmul of the same shape
reaches here and now (the CPU is shared, so both are measured in the same run).
"""

from __future__ import annotations

import os
import platform
import time

import torch


def matmul_gflops(
    m: int,
    k: int,
    n: int,
    repeats: int = 3,
    device: str | torch.device = "cpu",
    clock: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Best GFLOP/s of ``(m, k) @ (k, n)`` in ``dtype`` over ``repeats`` timed runs (after one warm-up).

    ``clock="cpu"`` divides by this process's CPU time (summed over its threads), which other users of a
    shared CPU barely disturb; ``"wall"`` by elapsed time (use it on a GPU).
    """
    timer = time.process_time if clock == "cpu" else time.perf_counter
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(n, k, device=device, dtype=dtype)
    (a @ b.T).sum().item()  # warm-up; .item() waits for a GPU
    best = float("inf")
    for _ in range(repeats):
        t0 = timer()
        (a @ b.T).sum().item()
        best = min(best, timer() - t0)
    return 2.0 * m * k * n / best / 1e9


def machine_line() -> str:
    """One line naming the machine and its load, to print under a results table."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), cpu {platform.machine()} "
        f"x{os.cpu_count()}, load average {load:.1f} (shared machine: figures vary with other users)"
    )
