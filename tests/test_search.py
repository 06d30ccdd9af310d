"""The knn kernel (ssps.sampling.search) equals a brute-force masked search, also when the excluded
neighbours crowd out the candidates (the exact second pass)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssps.sampling.search import knn_search


def brute_force(query, anchors, keys, slot_rows, slot_valid, k, allowed):
    sim = query @ keys[slot_rows.clamp_min(0)].float().T
    ok = slot_valid[None] & allowed(anchors[:, None], slot_rows[None])
    vals, slots = sim.masked_fill(~ok, -float("inf")).topk(k, dim=1)
    return vals, torch.where(torch.isfinite(vals), slots, -1)


@pytest.mark.parametrize("session_size", [1, 40])  # 40 same-session near-duplicates > k + margin
@pytest.mark.parametrize("chunk", [7, 4096])
def test_knn_search_is_exact(session_size, chunk):
    g = torch.Generator().manual_seed(0)
    n, d, k = 600, 16, 5
    sessions = torch.arange(n) // session_size
    centres = F.normalize(torch.randn(n // session_size + 1, d, generator=g), dim=1)
    keys = F.normalize(centres[sessions] + 0.05 * torch.randn(n, d, generator=g), dim=1).half()
    slot_rows = torch.cat([torch.randperm(n, generator=g)[:500], torch.full((20,), -1)])
    slot_valid = (slot_rows >= 0) & (torch.rand(520, generator=g) > 0.1)
    anchors = torch.randint(n, (64,), generator=g)

    def allowed(a, rows):
        return (rows != a) & (sessions[rows.clamp_min(0)] != sessions[a])

    query = keys[anchors].float()
    got = knn_search(query, anchors, keys, slot_rows, slot_valid, k, allowed, chunk=chunk)
    want = brute_force(query, anchors, keys, slot_rows, slot_valid, k, allowed)
    assert torch.equal(got[1], want[1])
    assert torch.allclose(got[0], want[0], atol=1e-6)  # chunked matmuls round differently


def test_knn_search_with_fewer_allowed_slots_than_k():
    keys = F.normalize(torch.randn(6, 4), dim=1)
    rows = torch.arange(6)
    vals, slots = knn_search(keys[:1], torch.tensor([0]), keys, rows, rows < 3, 4, lambda a, r: r != a)
    assert sorted(slots[0, :2].tolist()) == [1, 2] and slots[0, 2:].tolist() == [-1, -1]
    assert torch.isinf(vals[0, 2:]).all()
