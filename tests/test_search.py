"""The knn kernel (ssps.sampling.search) equals a brute-force masked search, also when the excluded
neighbours crowd out the candidates (the exact second pass), and through the bfloat16 shortlist, also
when near-ties inside bfloat16's rounding leave a shortlist uncertified (the float32 search again)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssps.sampling import search
from ssps.sampling.search import knn_search


def brute_force(query, anchors, keys, slot_rows, slot_valid, k, allowed):
    sim = query @ keys[slot_rows.clamp_min(0)].float().T
    ok = slot_valid[None] & allowed(anchors[:, None], slot_rows[None])
    vals, slots = sim.masked_fill(~ok, -float("inf")).topk(k, dim=1)
    return vals, torch.where(torch.isfinite(vals), slots, -1)


@pytest.mark.parametrize("session_size", [1, 40])  # 40 same-session near-duplicates > k + margin
@pytest.mark.parametrize("chunk", [7, 4096])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])  # bfloat16: the shortlist pass, forced
def test_knn_search_is_exact(session_size, chunk, dtype):
    g = torch.Generator().manual_seed(0)
    n, d, k = 600, 16, 5
    sessions = torch.arange(n) // session_size
    centres = F.normalize(torch.randn(n // session_size + 1, d, generator=g), dim=1)
    keys = F.normalize(centres[sessions] + 0.05 * torch.randn(n, d, generator=g), dim=1).to(dtype)
    slot_rows = torch.cat([torch.randperm(n, generator=g)[:500], torch.full((20,), -1)])
    slot_valid = (slot_rows >= 0) & (torch.rand(520, generator=g) > 0.1)
    anchors = torch.randint(n, (64,), generator=g)

    def allowed(a, rows):
        return (rows != a) & (sessions[rows.clamp_min(0)] != sessions[a])

    query = keys[anchors].float()
    bf16 = dtype == torch.bfloat16
    got = knn_search(query, anchors, keys, slot_rows, slot_valid, k, allowed, chunk=chunk, bfloat16_pass=bf16)
    want = brute_force(query, anchors, keys, slot_rows, slot_valid, k, allowed)
    assert torch.equal(got[1], want[1])
    assert torch.allclose(got[0], want[0], atol=1e-6)  # chunked matmuls round differently


def test_knn_search_with_fewer_allowed_slots_than_k():
    keys = F.normalize(torch.randn(6, 4), dim=1)
    rows = torch.arange(6)
    vals, slots = knn_search(keys[:1], torch.tensor([0]), keys, rows, rows < 3, 4, lambda a, r: r != a)
    assert sorted(slots[0, :2].tolist()) == [1, 2] and slots[0, 2:].tolist() == [-1, -1]
    assert torch.isinf(vals[0, 2:]).all()


def _count_float32_searches(monkeypatch) -> list[int]:
    """Anchors per call of the float32 candidate search, recorded while the bfloat16 pass runs."""
    calls: list[int] = []
    inner = search._candidates

    def counted(query, *args):
        calls.append(query.shape[0])
        return inner(query, *args)

    monkeypatch.setattr(search, "_candidates", counted)
    return calls


@pytest.mark.parametrize("rounded_query", [True, False])
def test_bfloat16_pass_certifies_clear_shortlists(monkeypatch, rounded_query):
    g = torch.Generator().manual_seed(1)
    n, d, k = 5000, 64, 3
    keys = F.normalize(torch.randn(n, d, generator=g), dim=1).bfloat16()
    rows, valid = torch.arange(n), torch.ones(n, dtype=torch.bool)
    anchors = torch.arange(32)
    query = keys[anchors].float()
    if not rounded_query:  # not exact in bfloat16: the bound also covers the query's own rounding
        query = F.normalize(query + 1e-3 * torch.randn(query.shape, generator=g), dim=1)
    calls = _count_float32_searches(monkeypatch)
    got = knn_search(query, anchors, keys, rows, valid, k, lambda a, r: r != a, bfloat16_pass=True)
    want = brute_force(query, anchors, keys, rows, valid, k, lambda a, r: r != a)
    assert torch.equal(got[1], want[1]) and torch.allclose(got[0], want[0], atol=1e-6)
    assert sum(calls) < len(anchors) // 4  # random keys: nearly every shortlist is certified


def test_bfloat16_pass_searches_again_when_ties_blur_the_shortlist(monkeypatch):
    g = torch.Generator().manual_seed(2)
    n, d, k = 400, 32, 4
    query = F.normalize(torch.randn(1, d, generator=g), dim=1).bfloat16()
    # Every key at cosine ~0.5 with the query, spread by ~1e-4: far inside bfloat16's rounding of 0.5
    # (2^-9), so no shortlist of 69 out of 400 can be certified; the float32 order is still well defined.
    other = F.normalize(torch.randn(n, d, generator=g), dim=1)
    other = F.normalize(other - (other @ query.float().T) * query.float(), dim=1)
    cos = 0.5 + 1e-4 * torch.randn(n, 1, generator=g)
    keys = (cos * query.float() + (1 - cos**2).sqrt() * other).bfloat16()
    rows, valid = torch.arange(n), torch.ones(n, dtype=torch.bool)
    q = query.float()
    calls = _count_float32_searches(monkeypatch)
    got = knn_search(q, torch.tensor([-1]), keys, rows, valid, k, lambda a, r: r != a, bfloat16_pass=True)
    want = brute_force(q, torch.tensor([-1]), keys, rows, valid, k, lambda a, r: r != a)
    assert calls == [1]  # the one anchor went back to the float32 search
    assert torch.equal(got[1], want[1]) and torch.allclose(got[0], want[0], atol=1e-6)


def test_bfloat16_pass_is_chosen_only_for_bfloat16_keys_on_a_capable_cpu(monkeypatch):
    keys = F.normalize(torch.randn(50, 8), dim=1)
    rows, valid = torch.arange(50), torch.ones(50, dtype=torch.bool)
    calls = []
    inner = search._candidates_bfloat16
    monkeypatch.setattr(search, "_candidates_bfloat16", lambda *a: calls.append(1) or inner(*a))
    monkeypatch.setattr(search, "native_bfloat16", lambda: True)

    def run(dtype):
        stored = keys.to(dtype)
        knn_search(stored[:2].float(), torch.arange(2), stored, rows, valid, 3, lambda a, r: r != a)

    for dtype, want in ((torch.float16, 0), (torch.float32, 0), (torch.bfloat16, 1)):
        run(dtype)
        assert len(calls) == want
    monkeypatch.setattr(search, "native_bfloat16", lambda: False)  # emulated bfloat16 would be slower
    run(torch.bfloat16)
    assert len(calls) == 1
