"""kmeans-repr draws, known answer: uniform over the anchor's M nearest clusters, then uniform over the
chosen cluster's allowed queue entries (chi-square goodness of fit on 20,000 draws)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from ssps.config import SSPSConfig
from ssps.sampling.ssps import SSPSSampler

N, DIM = 40, 8
# Hand-made clustering: utterance -> cluster, and each cluster's M = 2 nearest other clusters.
ASSIGN = torch.tensor([0] * 10 + [1] * 5 + [2] * 15 + [3] * 10)
NEIGHBOURS = torch.tensor([[1, 2], [0, 2], [1, 3], [2, 0]])
DRAWS, BATCH = 20_000, 4_000


def _sampler(m: int) -> SSPSSampler:
    cfg = SSPSConfig(sampling="kmeans-repr", nearest_clusters=m, num_clusters=4, positive_queue_size=N)
    s = SSPSSampler(cfg, N, DIM, (DIM,), seed=3)
    idx = torch.arange(N)
    s.write_reference(idx, torch.randn(N, DIM))
    s.write_positive(idx, torch.randn(N, DIM))
    s.assignments.copy_(ASSIGN)
    s.centroids = torch.eye(4, DIM)
    s.neighbours = NEIGHBOURS[:, :m].contiguous()
    return s


def _counts(s: SSPSSampler, anchor: int) -> np.ndarray:
    counts = torch.zeros(N, dtype=torch.long)
    for step in range(DRAWS // BATCH):
        res = s.sample(torch.full((BATCH,), anchor), step=step)
        assert res.found.all()
        counts += torch.bincount(res.source_indices, minlength=N)
    return counts.numpy()


@pytest.mark.parametrize(
    ("m", "anchor", "expected"),
    [
        # Anchor in cluster 0, M = 2: clusters 1 (5 entries) and 2 (15 entries) each half the time.
        (2, 3, {**{i: 0.5 / 5 for i in range(10, 15)}, **{i: 0.5 / 15 for i in range(15, 30)}}),
        # M = 1: cluster 1 only.
        (1, 3, {i: 1 / 5 for i in range(10, 15)}),
        # M = 0: the anchor's own cluster 3, without the anchor's own utterance (39).
        (0, 39, {i: 1 / 9 for i in range(30, 39)}),
    ],
)
def test_kmeans_repr_is_uniform_over_clusters_then_entries(m, anchor, expected):
    counts = _counts(_sampler(m), anchor)
    support = sorted(expected)
    assert counts.sum() == DRAWS and counts[support].sum() == DRAWS  # nothing drawn outside
    probs = np.array([expected[i] for i in support])
    assert probs.sum() == pytest.approx(1.0)
    assert chisquare(counts[support], DRAWS * probs).pvalue > 1e-3
    # The test can fail: an entry-uniform draw over clusters 1 and 2 (1/20 each) is rejected.
    if m == 2:
        assert chisquare(counts[support], np.full(len(support), DRAWS / len(support))).pvalue < 1e-6
