"""What this machine's CPU can do, where a code path depends on it."""

from __future__ import annotations

import functools

import torch


@functools.cache
def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere torch emulates it,
    slower than float32."""
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in probes)


def amp_enabled(amp: str, device: torch.device) -> bool:
    """Whether ``train.amp`` runs autocast on ``device``: CUDA, and bf16 also a CPU with native bfloat16."""
    if amp == "none":
        return False
    return device.type == "cuda" or (amp == "bf16" and device.type == "cpu" and native_bfloat16())
