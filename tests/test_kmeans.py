"""Spherical k-means and the nearest-clusters table, against independent numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score

from ssps.errors import SSPSError
from ssps.sampling.diagnostics import cluster_diagnostics
from ssps.sampling.kmeans import nearest_clusters, spherical_kmeans


def _blobs(n_blobs: int, per_blob: int, dim: int, noise: float = 0.05, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_blobs, dim, generator=g), dim=1)
    labels = torch.arange(n_blobs).repeat_interleave(per_blob)
    x = F.normalize(centres[labels] + noise * torch.randn(len(labels), dim, generator=g), dim=1)
    return x, labels


def _numpy_spherical_kmeans(x: np.ndarray, init: np.ndarray, iterations: int):
    """Plain Lloyd loop, one cluster at a time: the independent reference."""
    c = x[init].copy()
    for _ in range(iterations):
        a = np.argmax(x @ c.T, axis=1)
        for j in range(len(c)):
            members = x[a == j]
            if len(members):
                c[j] = members.sum(0) / np.linalg.norm(members.sum(0))
    return np.argmax(x @ c.T, axis=1), c  # assignments to the final centroids


def test_matches_plain_lloyd_reference():
    x, _ = _blobs(6, 30, 12, noise=0.4)
    res = spherical_kmeans(x, 6, iterations=5, seed=7, chunk_size=32)  # several chunks
    init = torch.randperm(len(x), generator=torch.Generator().manual_seed(7))[:6].numpy()
    a, c = _numpy_spherical_kmeans(x.double().numpy(), init, 5)
    assert np.array_equal(res.assignments.numpy(), a)
    assert np.allclose(res.centroids.numpy(), c, atol=1e-5)


def test_every_row_is_on_its_nearest_returned_centroid():
    x, _ = _blobs(20, 50, 16, noise=0.8)  # overlapping blobs: rows still move in the last update
    res = spherical_kmeans(x, 20, iterations=3, seed=0, chunk_size=64)
    nearest = (x @ res.centroids.T).argmax(1)
    assert torch.equal(res.assignments, nearest), f"{(res.assignments != nearest).float().mean():.1%} off"
    assert res.inertia == pytest.approx(float((1 - (x @ res.centroids.T).max(1).values).sum()), rel=1e-5)


def test_recovers_separated_blobs():
    x, labels = _blobs(5, 40, 16)
    # Random init (as in the paper) can start two centroids in one blob and stall in that local minimum
    # for some seeds (9 of 20 here); seed 0 starts in five blobs, and then Lloyd must recover them exactly.
    res = spherical_kmeans(x, 5, iterations=10, seed=0)
    assert adjusted_rand_score(labels.numpy(), res.assignments.numpy()) == 1.0
    assert cluster_diagnostics(res.assignments, labels, None)["purity"] == 1.0
    assert torch.allclose(res.centroids.norm(dim=1), torch.ones(5), atol=1e-5)
    assert res.inertia < 0.04 * len(x)  # noise 0.05 in 16-d: 1 - cos ~ 0.05**2 * 16 / 2 per row


def test_deterministic_for_a_seed():
    x, _ = _blobs(8, 20, 10, noise=0.5)
    a = spherical_kmeans(x, 8, iterations=6, seed=3)
    b = spherical_kmeans(x, 8, iterations=6, seed=3)
    c = spherical_kmeans(x, 8, iterations=6, seed=4)
    assert torch.equal(a.assignments, b.assignments) and torch.equal(a.centroids, b.centroids)
    assert not torch.equal(a.centroids, c.centroids)


def test_float16_input_and_chunking_agree():
    x, _ = _blobs(4, 25, 8, noise=0.3)
    x16 = x.half()
    one = spherical_kmeans(x16, 4, iterations=4, seed=1, chunk_size=1000)
    many = spherical_kmeans(x16, 4, iterations=4, seed=1, chunk_size=7)
    assert torch.equal(one.assignments, many.assignments)
    assert torch.allclose(one.centroids, many.centroids, atol=1e-6)


def test_empty_clusters_when_k_exceeds_distinct_points():
    distinct = F.normalize(torch.randn(3, 6, generator=torch.Generator().manual_seed(0)), dim=1)
    x = distinct.repeat(10, 1)  # 30 rows, 3 distinct points, k = 5
    res = spherical_kmeans(x, 5, iterations=5, seed=0)
    assert torch.isfinite(res.centroids).all()
    assert res.assignments.min() >= 0 and res.assignments.max() < 5
    # every row sits on its own centroid: all 3 distinct points got a cluster
    assert torch.allclose((x * res.centroids[res.assignments]).sum(1), torch.ones(30), atol=1e-5)
    assert len(set(res.assignments.tolist())) >= 3  # duplicate centroids may split exact ties


def test_bad_k_raises():
    x, _ = _blobs(2, 3, 4)
    with pytest.raises(SSPSError, match="k must be"):
        spherical_kmeans(x, 7)
    with pytest.raises(SSPSError, match="backend"):
        spherical_kmeans(x, 2, backend="sklearn")


@pytest.mark.requires("module:faiss")
def test_faiss_backend_assignments_are_nearest_centroids():
    x, _ = _blobs(4, 50, 8)
    res = spherical_kmeans(x, 4, iterations=10, seed=0, backend="faiss")
    assert res.centroids.shape == (4, 8)
    assert torch.equal(res.assignments, (x @ res.centroids.T).argmax(1))


@pytest.mark.parametrize("m", [0, 1, 3])
def test_nearest_clusters_matches_full_matrix(m):
    c = F.normalize(torch.randn(50, 8, generator=torch.Generator().manual_seed(m)), dim=1)
    table = nearest_clusters(c, m, block_size=16)  # 4 x 4 tiles, upper triangle only
    s = c @ c.T
    s.fill_diagonal_(-float("inf"))
    expected = s.topk(m, dim=1).indices if m else torch.zeros(50, 0, dtype=torch.long)
    assert table.shape == (50, m)
    assert torch.equal(table, expected)
    assert not (table == torch.arange(50)[:, None]).any()  # never itself


def test_nearest_clusters_bad_m():
    with pytest.raises(SSPSError, match="M must be"):
        nearest_clusters(torch.eye(3), 3)
