"""Spherical k-means and the nearest-clusters table, chunked and vectorised.

Every assignment step is one float32 matmul per chunk of rows (``x_chunk @ C.T``, then argmax), so the
cost is 2 * N * K * D flops per iteration and memory stays at ``chunk_size * K`` scores. The update step
sums rows into their centroid with ``index_add_`` (no loop over clusters or samples).

Identical on every rank: each rank runs the same computation from the same (gathered) queue and the same
seed, then rank 0's result is broadcast, because ``index_add_`` on a GPU adds with atomics in an
unspecified order and ranks could otherwise drift apart by rounding.

>>> g = torch.Generator().manual_seed(0)
>>> centres = torch.eye(3)
>>> x = torch.cat([centres[i] + 0.05 * torch.randn(20, 3, generator=g) for i in range(3)])
>>> res = spherical_kmeans(x, 3, iterations=5)
>>> [len(set(res.assignments[i * 20 : (i + 1) * 20].tolist())) for i in range(3)]
[1, 1, 1]
>>> nearest_clusters(torch.eye(3), 2).shape
torch.Size([3, 2])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssps import dist
from ssps.errors import SSPSError

SCORES_PER_CHUNK = 1 << 23  # chunk_size * K scores held at once: 32 MiB of float32


@dataclass(frozen=True)
class KMeansResult:
    """centroids (K, D) float32 unit rows; assignments (N,) long; inertia = sum over rows of 1 - cosine."""

    centroids: torch.Tensor
    assignments: torch.Tensor
    inertia: float


def _default_chunk(k: int) -> int:
    return max(256, SCORES_PER_CHUNK // max(k, 1))


def _chunk(x: torch.Tensor, start: int, end: int, device: torch.device) -> torch.Tensor:
    # Rows may be stored in float16 (the reference queue); scores are always computed in float32.
    return F.normalize(x[start:end].to(device, torch.float32, non_blocking=True), dim=1)


@torch.no_grad()
def _torch_kmeans(x: torch.Tensor, k: int, iterations: int, seed: int, chunk_size: int, device: torch.device):
    n, d = x.shape
    g = torch.Generator().manual_seed(seed)
    init = torch.randperm(n, generator=g)[:k].to(x.device)  # k distinct rows
    centroids = _chunk(x[init], 0, k, device)
    assignments = torch.empty(n, dtype=torch.long, device=device)
    best = torch.empty(n, dtype=torch.float32, device=device)

    def assign(sums: torch.Tensor | None) -> None:
        for start in range(0, n, chunk_size):
            end = min(start + chunk_size, n)
            xc = _chunk(x, start, end, device)
            score, a = (xc @ centroids.T).max(dim=1)  # (n_c, K) -> (n_c,)
            best[start:end], assignments[start:end] = score, a
            if sums is not None:
                sums.index_add_(0, a, xc)

    for _ in range(max(iterations, 1)):
        sums = torch.zeros(k, d, dtype=torch.float32, device=device)
        assign(sums)
        counts = torch.bincount(assignments, minlength=k)
        empty = (counts == 0).nonzero().squeeze(1)
        centroids = F.normalize(sums, dim=1)
        if empty.numel():
            # Re-seed empty clusters from the rows farthest from their centroid (deterministic: the
            # scores are the same everywhere). They may stay empty if rows are duplicates (K > distinct).
            far = torch.topk(-best, min(empty.numel(), n)).indices
            centroids[empty[: far.numel()]] = _chunk(x[far.to(x.device)], 0, far.numel(), device)
    # Assignments from the final centroids, so every row sits on its nearest returned centroid (those
    # from before the last update left ~1 % of rows elsewhere). One more scoring pass, no update.
    assign(None)
    inertia = float((1.0 - best).sum())
    return centroids, assignments, inertia


def _faiss_kmeans(x: torch.Tensor, k: int, iterations: int, seed: int, device: torch.device):
    import faiss  # optional dependency: only for very large K on CPU

    xn = F.normalize(x.float(), dim=1).cpu().numpy()
    km = faiss.Kmeans(
        xn.shape[1], k, niter=max(iterations, 1), spherical=True, seed=seed, min_points_per_centroid=1
    )
    km.train(xn)
    scores, labels = km.index.search(xn, 1)
    centroids = F.normalize(torch.from_numpy(km.centroids).float(), dim=1).to(device)
    assignments = torch.from_numpy(labels[:, 0]).long().to(device)
    inertia = float((1.0 - torch.from_numpy(scores[:, 0])).sum())
    return centroids, assignments, inertia


def spherical_kmeans(
    x: torch.Tensor,
    k: int,
    iterations: int = 10,
    seed: int = 0,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    backend: str = "torch",
) -> KMeansResult:
    """Cluster rows by cosine: Lloyd iterations with centroids renormalised to the unit sphere.

    Initialised from ``k`` distinct random rows (a CPU ``torch.Generator`` seeded with ``seed``).
    ``iterations`` assignment steps run, each followed by an update; the returned assignments come from
    a last assignment step against the returned centroids (every row is on its nearest centroid).
    Empty clusters are re-seeded from the farthest rows.

    Args:
        x: (N, D) rows, any float dtype (normalised per chunk, scored in float32).
        k: number of clusters, 1 <= k <= N.
        iterations: assignment steps (10 in the paper).
        seed: initialisation seed; the same seed gives the same result.
        chunk_size: rows scored per matmul; default keeps ``chunk_size * k`` near 8 M scores.
        device: where to compute (default: ``x.device``); ``x`` may stay on the CPU.
        backend: ``torch`` (default) or ``faiss`` (faiss-cpu, subsamples large inputs).

    Returns:
        KMeansResult with centroids (K, D), assignments (N,) on ``device``, identical on every rank.
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise SSPSError(f"k-means: expected a non-empty (N, D) tensor, got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise SSPSError(f"k-means: k must be between 1 and the number of rows {x.shape[0]}, got {k}")
    device = torch.device(device) if device is not None else x.device
    if backend == "torch":
        centroids, assignments, inertia = _torch_kmeans(
            x, k, iterations, seed, chunk_size or _default_chunk(k), device
        )
    elif backend == "faiss":
        centroids, assignments, inertia = _faiss_kmeans(x, k, iterations, seed, device)
    else:
        raise SSPSError(f"k-means backend: expected torch or faiss, got {backend!r}")
    dist.broadcast(centroids)
    dist.broadcast(assignments)
    return KMeansResult(centroids, assignments, inertia)


def _merge_topk(vals, idx, new_vals, new_idx, m: int):
    """Keep the m best of two (R, m) candidate lists per row."""
    v, pos = torch.cat([vals, new_vals], dim=1).topk(m, dim=1)
    return v, torch.cat([idx, new_idx], dim=1).gather(1, pos)


@torch.no_grad()
def nearest_clusters(centroids: torch.Tensor, m: int, block_size: int = 4096) -> torch.Tensor:
    """The m nearest OTHER clusters of every cluster, by centroid cosine.

    The (K, K) similarity is never held: it is computed in (block, block) tiles, and only the upper
    triangle of tiles, since tile (i, j) gives row-wise candidates for block i and column-wise ones for
    block j (half the flops of the full product).

    Args:
        centroids: (K, D) unit rows.
        m: neighbours per cluster, 0 <= m < K.
        block_size: tile side.

    Returns:
        (K, M) long, nearest first.
    """
    k = centroids.shape[0]
    if not 0 <= m < k:
        raise SSPSError(f"nearest clusters: M must be between 0 and K - 1 = {k - 1}, got {m}")
    c = centroids.float()
    dev = c.device
    vals = torch.full((k, m), -float("inf"), device=dev)
    idx = torch.zeros((k, m), dtype=torch.long, device=dev)
    if m == 0:
        return idx
    starts = list(range(0, k, block_size))
    for i in starts:
        ie = min(i + block_size, k)
        for j in starts:
            if j < i:
                continue
            je = min(j + block_size, k)
            s = c[i:ie] @ c[j:je].T  # (bi, bj)
            if i == j:
                s.fill_diagonal_(-float("inf"))  # a cluster is not its own neighbour
            mr, mc = min(m, je - j), min(m, ie - i)
            rv, ri = s.topk(mr, dim=1)
            vals[i:ie], idx[i:ie] = _merge_topk(vals[i:ie], idx[i:ie], rv, ri + j, m)
            if i != j:
                cv, ci = s.topk(mc, dim=0)  # (mc, bj): best rows of block i for each column
                vals[j:je], idx[j:je] = _merge_topk(vals[j:je], idx[j:je], cv.T, ci.T + i, m)
    return idx
