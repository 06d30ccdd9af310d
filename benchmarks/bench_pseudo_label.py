"""Pseudo-labelling at scale: k-means of 100,000 x 512 to K = 5,000, average-linkage merging of the
centroids, the silhouette choice of S; measured on this CPU and extrapolated to VoxCeleb2
(1,092,009 x 512 -> K = 50,000 -> a few thousand pseudo-speakers).

Usage: python benchmarks/bench_pseudo_label.py [--threads 1] [--iterations 2] [--rows N] [--clusters K]

The rows are synthetic speakers (1,000 random directions, each utterance one plus noise), so the merge
and the silhouette see structure; their cost does not depend on it. Times are CPU seconds, so a shared
machine does not inflate them. k-means runs ``--iterations`` steps, extrapolated linearly to 10 (each
step costs the same 2 N K D flops), and to VoxCeleb2 by (N' K') / (N K). The linkage holds K (K - 1) / 2
float64 distances (memory traced with tracemalloc); average linkage (scipy, nearest-neighbour chain)
takes O(K^2) time, the exponent fitted from two sizes. The silhouette choice works on a fixed subset of
rows, so its cost does not grow with N.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import torch
from scipy.cluster.hierarchy import linkage

from ssps.pseudo.cluster import PseudoLabelConfig, _silhouette_cut
from ssps.sampling.kmeans import spherical_kmeans

VOX_ROWS, VOX_CLUSTERS = 1_092_009, 50_000


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def synthetic(n: int, d: int, speakers: int = 1000, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    centres = g.standard_normal((speakers, d)).astype(np.float32)
    x = centres[g.integers(0, speakers, n)] + 0.7 * g.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=5_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, d, k = args.rows, 512, args.clusters
    x = synthetic(n, d)
    print(
        f"rows {n:,} x {d}, K = {k:,}, {args.threads} thread(s); peak RSS after data {peak_rss_gib():.2f} GiB"
    )

    km, wall, cpu = timed(lambda: spherical_kmeans(torch.from_numpy(x), k, args.iterations, seed=0))
    per_iter = cpu / args.iterations  # CPU seconds: the machine may be shared
    print(f"k-means: {args.iterations} iterations {wall:.1f} s wall ({cpu:.1f} s cpu), {per_iter:.1f} s/iter")
    fine = km.assignments.numpy()
    centroids = km.centroids.numpy().astype(np.float64)

    sizes, link_times = [k // 2, k], []
    for kk in sizes:
        tracemalloc.start()  # numpy arrays (scipy's distances and its working copy) are traced
        _, w, c = timed(lambda kk=kk: linkage(centroids[:kk], method="average", metric="cosine"))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        link_times.append(c)
        gib = kk * (kk - 1) / 2 * 8 / 2**30
        print(
            f"average linkage of {kk:,} centroids: {w:.2f} s wall ({c:.2f} s cpu); distances {gib:.3f} GiB, "
            f"traced peak {peak / 2**30:.3f} GiB"
        )
    exponent = float(np.log(link_times[1] / link_times[0]) / np.log(sizes[1] / sizes[0]))
    per_distance = peak / (k * (k - 1) / 2)
    z = linkage(centroids, method="average", metric="cosine")

    cfg = PseudoLabelConfig(clusters=k, min_speakers=200, max_speakers=k // 2, candidates=16)
    (cut, sel), w_sil, c_sil = timed(lambda: _silhouette_cut(z, fine, x, cfg, k))
    best = sel["candidates"][int(np.argmax(sel["silhouette"]))]
    cuts, rows = len(sel["candidates"]), sel["rows"]
    print(
        f"silhouette choice, {cuts} cuts on {rows:,} rows: {w_sil:.1f} s ({c_sil:.1f} s cpu) -> S = {best:,}"
    )
    print(f"(1,000 synthetic speakers); peak RSS {peak_rss_gib():.2f} GiB")

    scale = (VOX_ROWS * VOX_CLUSTERS) / (n * k)
    km_vox = per_iter * 10 * scale
    power = max(exponent, 2.0)
    link_vox = link_times[1] * (VOX_CLUSTERS / k) ** power
    rows_gib = VOX_ROWS * d * 4 / 2**30
    pairs = VOX_CLUSTERS * (VOX_CLUSTERS - 1) / 2
    dist_gib = pairs * 8 / 2**30
    print(
        "\nExtrapolated to VoxCeleb2 (1,092,009 x 512 -> K = 50,000), CPU seconds of this CPU, same threads:"
    )
    print("| stage | time | memory |\n|---|---|---|")
    print(
        f"| k-means, 10 iterations (x{scale:.0f} flops) | {km_vox / 3600:.1f} h | rows {rows_gib:.1f} GiB |"
    )
    print(
        f"| average linkage, 50,000 centroids (time ~K^{power:.2f}) | {link_vox / 60:.1f} min "
        f"| {dist_gib:.1f} GiB of distances; {pairs * max(per_distance, 8) / 2**30:.1f} GiB measured peak |"
    )
    print(
        f"| silhouette choice ({rows:,} rows, {cuts} cuts) | {c_sil:.0f} s | {rows**2 * 4 / 2**20:.0f} MiB |"
    )


if __name__ == "__main__":
    main()
