"""SSPS sampling speed at VoxCeleb2 scale, and what the queues cost in memory.

Usage: python benchmarks/bench_sampler.py [--threads 1] [--only draw|knn|memory]
- draw: one batch of 256 anchors, ``kmeans-repr``, Q' = 25,000, K = 25,000, N = 1,092,009 training
  utterances (random assignments and neighbour table: the draw's cost does not depend on their quality);
  with and without ``exclude_same_session`` (target: < 5 ms).
- knn: one batch of 256 anchors against a bank of 1,000,000 x 512 reference embeddings, all in the
  positive queue (target: < 2 s), stored in float16 (the default) and in bfloat16 (scored in bfloat16
  first), beside the bare matmul rate of one chunk's shape in each precision.
- memory: queue bytes (built on the meta device, so nothing is allocated) for SimCLR (512-d positives) and
  DINO (2 x 65,536 logits vs 2 x 256 bottleneck), float16 vs float32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _matmul import machine_line, matmul_gflops

from ssps.config import SSPSConfig
from ssps.sampling.search import BF16_CHUNK
from ssps.sampling.ssps import KNN_CHUNK, SSPSSampler
from ssps.utils.hardware import native_bfloat16

VOX2 = 1_092_009  # VoxCeleb2 dev utterances
DIM = 512


def _timed(fn, repeats: int) -> tuple[list[float], list[float], object]:
    walls, cpus, out = [], [], None
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(r)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, out


def bench_draw(exclude: bool, repeats: int = 50) -> None:
    k, q, b = 25_000, 25_000, 256
    g = torch.Generator().manual_seed(0)
    cfg = SSPSConfig(num_clusters=k, positive_queue_size=q, exclude_same_session=exclude)
    sessions = torch.randint(150_000, (VOX2,), generator=g)  # VoxCeleb2 has ~150k videos
    s = SSPSSampler(cfg, VOX2, DIM, (DIM,), session_ids=sessions)
    s.assignments.copy_(torch.randint(k, (VOX2,), generator=g))
    s.centroids = F.normalize(torch.randn(k, DIM, generator=g), dim=1)
    s.neighbours = ((torch.arange(k) + torch.randint(1, k, (k,), generator=g)) % k)[:, None]
    s.write_positive(torch.randint(VOX2, (q,), generator=g), torch.randn(q, DIM, generator=g))
    anchors = torch.randint(VOX2, (b,), generator=g)
    s.sample(anchors, step=0)  # warm-up
    walls, cpus, res = _timed(lambda r: s.sample(anchors, step=r + 1), repeats)
    print(
        f"| kmeans-repr draw, B = {b}, exclude_same_session={exclude} | {1e3 * statistics.median(walls):.2f} "
        f"| {1e3 * min(walls):.2f} | {1e3 * statistics.median(cpus):.2f} | coverage {res.coverage:.2f} |"
    )


def bench_knn(bank: int = 1_000_000, repeats: int = 3) -> None:
    """The same bank stored in float16 (the default) and in bfloat16 (``ssps.queue_dtype=bfloat16``: the
    kernel's bfloat16 shortlist pass where the CPU has native bfloat16), side by side, same anchors."""
    b = 256
    draws = {}
    for dtype in ("float16", "bfloat16"):
        g = torch.Generator().manual_seed(0)
        cfg = SSPSConfig(sampling="knn", positive_queue_size=bank, knn_neighbours=3, queue_dtype=dtype)
        s = SSPSSampler(cfg, bank, DIM, (8,))  # positive rows are only gathered at the end: keep them small
        for start in range(0, bank, 100_000):
            idx = torch.arange(start, min(start + 100_000, bank))
            s.write_reference(idx, torch.randn(len(idx), DIM, generator=g))
            s.write_positive(idx, torch.zeros(len(idx), 8))
        anchors = torch.randint(bank, (b,), generator=g)
        walls, cpus, res = _timed(lambda r, s=s, a=anchors: s.sample(a, step=r), repeats)
        draws[dtype] = res.source_indices
        gflops = 2.0 * b * bank * DIM / statistics.median(cpus) / 1e9
        if dtype == "bfloat16":
            rate = matmul_gflops(b, DIM, BF16_CHUNK, clock="cpu", dtype=torch.bfloat16)
            same = float((draws["float16"] == res.source_indices).float().mean())
            note = (
                f"bfloat16 pass {'on' if native_bfloat16() else 'off (no native bfloat16)'}, bare bfloat16 "
                f"matmul {rate:.1f}; same draw as float16 for {100 * same:.1f} % of anchors"
            )
        else:
            note = f"bare float32 matmul {matmul_gflops(b, DIM, KNN_CHUNK, clock='cpu'):.1f}"
        del s
        print(
            f"| knn-3, B = {b}, bank {bank:,} x {DIM} {dtype} | {1e3 * statistics.median(walls):.0f} "
            f"| {1e3 * min(walls):.0f} | {1e3 * statistics.median(cpus):.0f} "
            f"| {gflops:.1f} GFLOP/s per CPU s ({note}), coverage {res.coverage:.2f} |"
        )


def bench_memory() -> None:
    print("\n| queues at N = 1,092,009 | dtype | reference MiB | positive MiB | sampler total MiB |")
    print("|---|---|---|---|---|")
    cases = [("SimCLR, 25k x 512", (DIM,)), ("DINO logits, 25k x 2 x 65,536", (2, 65_536))]
    cases.append(("DINO bottleneck, 25k x 2 x 256", (2, 256)))
    for name, shape in cases:
        for dtype in ("float16", "float32"):
            with torch.device("meta"):  # sizes only: nothing is allocated
                s = SSPSSampler(SSPSConfig(queue_dtype=dtype), VOX2, DIM, shape)
            mib = [x / 2**20 for x in (s.reference.nbytes, s.positive.nbytes, s.memory_bytes())]
            print(f"| {name} | {dtype} | {mib[0]:,.0f} | {mib[1]:,.0f} | {mib[2]:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=["draw", "knn", "memory"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only in (None, "draw", "knn"):
        print("| case | median wall ms | best wall ms | median cpu ms | notes |")
        print("|---|---|---|---|---|")
    if args.only in (None, "draw"):
        bench_draw(exclude=False)
        bench_draw(exclude=True)
    if args.only in (None, "knn"):
        bench_knn()
    if args.only in (None, "memory"):
        bench_memory()
    print(machine_line())


if __name__ == "__main__":
    main()
