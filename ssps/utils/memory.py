"""Keep freed memory in the process instead of returning it to the OS after every step (glibc only).

glibc serves blocks over its mmap threshold (at most 32 MB) with fresh ``mmap`` pages and unmaps them on
free, so each training step page-faults and zeroes every large tensor again: on this project's CPU that was
half of the log-mel front end's time (0.30 -> 0.12 CPU s for 256 x 2 s crops, benchmarks/bench_demo_step.py).
With mmap off and no trimming, the heap keeps the peak of one step and reuses it; results are unchanged
(the same arithmetic on the same values; only where the bytes live differs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Tell glibc malloc to reuse freed memory; True when applied (False on other platforms / libcs)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1  # large blocks come from the heap, which is reused
    ok &= mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1  # never give the heap's top back to the OS
    ok &= mallopt(M_TOP_PAD, 256 << 20) == 1  # grow the heap in 256 MB steps (fewer brk calls)
    return bool(ok)
