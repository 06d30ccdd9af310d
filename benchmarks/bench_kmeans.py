"""Spherical k-means (10 iterations) and the nearest-clusters table at the paper's sizes.

Wall time is what a run waits; cpu time is this process's share of a shared CPU (one thread: cpu
time close to wall time means no contention).

Usage: python benchmarks/bench_kmeans.py [--threads 1] [--iterations 10] [--only small|large|nearest]
Cases: 100,000 x 512 with K = 2,500 and 50,000 x 512 with K = 25,000 (float16 rows, as the reference
queue stores them). Effective GFLOP/s counts 2 * N * K * D per assignment step; it is printed beside a
bare float32 matmul of one chunk's shape (target: >= 75 % of it); both rates are per CPU second.
Nearest clusters: K = 25,000, M = 1 (target: < 10 s).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _matmul import machine_line, matmul_gflops

from ssps.sampling.kmeans import _default_chunk, nearest_clusters, spherical_kmeans

CASES = {"small": (100_000, 512, 2_500), "large": (50_000, 512, 25_000)}


def bench_kmeans(n: int, d: int, k: int, iterations: int) -> None:
    x = F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(0)), dim=1).half()
    chunk = _default_chunk(k)
    t0, c0 = time.perf_counter(), time.process_time()
    res = spherical_kmeans(x, k, iterations=iterations, seed=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    gflops = 2.0 * n * k * d * iterations / cpu / 1e9  # per CPU second, like the matmul figure
    limit = matmul_gflops(min(chunk, n), d, k, clock="cpu")
    used = int(torch.bincount(res.assignments, minlength=k).gt(0).sum())
    row = [f"{n:,} x {d}", f"{k:,}", iterations, f"{wall:.2f}", f"{cpu:.2f}", f"{gflops:.1f}", f"{limit:.1f}"]
    print("| " + " | ".join(map(str, row)) + f" | {100 * gflops / limit:.1f} % | {used:,} |")


def bench_nearest(k: int, d: int, m: int) -> None:
    c = F.normalize(torch.randn(k, d, generator=torch.Generator().manual_seed(1)), dim=1)
    t0, c0 = time.perf_counter(), time.process_time()
    nearest_clusters(c, m)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    gflops = 2.0 * k * k * d / 2 / cpu / 1e9  # upper triangle of tiles: half the full product
    print(
        f"nearest clusters: K = {k:,}, D = {d}, M = {m}: {wall:.2f} s wall, {cpu:.2f} s cpu "
        f"({gflops:.1f} GFLOP/s per CPU second)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--only", choices=[*CASES, "nearest"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only in (None, *CASES):
        print("| N x D | K | iters | wall s | cpu s | GFLOP/s | matmul GFLOP/s | share | non-empty |")
        print("|" + "---|" * 9)
        for name, (n, d, k) in CASES.items():
            if args.only in (None, name):
                bench_kmeans(n, d, k, args.iterations)
    if args.only in (None, "nearest"):
        bench_nearest(25_000, 512, 1)
    print(machine_line())


if __name__ == "__main__":
    main()
