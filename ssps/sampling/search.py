"""Exact k-nearest-neighbour search by cosine over the positive queue, chunked (the ``knn`` sampler's kernel).

The cost at VoxCeleb scale (256 anchors x 1,000,000 entries x 512) is the matmul; everything else is kept
per entry or per candidate, never per (anchor, entry) pair:

- entries that are empty or unfilled get -inf through one (C,) row broadcast over the chunk's scores;
- the per-anchor exclusions (own utterance, same session, own cluster...) are applied after the search,
  to the ``k + margin`` best candidates only. When an anchor keeps fewer than ``k`` allowed candidates
  while more valid entries exist, only that anchor is searched again with the full (anchor, entry) mask,
  so the result is the exact top-k of the allowed entries in every case.

>>> import torch
>>> keys = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
>>> rows = torch.arange(50)
>>> allowed = lambda a, r: r != a  # an anchor is never its own neighbour
>>> valid = torch.ones(50, dtype=torch.bool)
>>> vals, slots = knn_search(keys[[3, 7]], torch.tensor([3, 7]), keys, rows, valid, 4, allowed)
>>> slots.shape, bool((slots[0] != 3).all() and (slots[1] != 7).all())
(torch.Size([2, 4]), True)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Queue entries scored per matmul. Small chunks keep the temporaries (bank rows in float32, the (B, chunk)
# scores) in cache and under the allocator's mmap threshold: on this project's CPU a 300k bank took 0.96 s
# with 4,096 and 1.61 s with 65,536 (benchmarks/bench_sampler.py).
CHUNK = 1 << 12
MARGIN = 16  # candidates kept beyond k, so that a few excluded ones rarely force a second search

Allowed = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _top(sim: torch.Tensor, m: int, vals: torch.Tensor, slots: torch.Tensor, offset: int):
    v, i = sim.topk(min(m, sim.shape[1]), dim=1)
    v, pos = torch.cat([vals, v], 1).topk(m, dim=1)
    return v, torch.cat([slots, i + offset], 1).gather(1, pos)


def knn_search(
    query: torch.Tensor,
    anchors: torch.Tensor,
    keys: torch.Tensor,
    slot_rows: torch.Tensor,
    slot_valid: torch.Tensor,
    k: int,
    allowed: Allowed,
    chunk: int = CHUNK,
    margin: int = MARGIN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` allowed queue slots of highest cosine for each anchor.

    Args:
        query: (B, D) unit rows (the anchors' keys).
        anchors: (B,) the anchors' dataset rows (passed to ``allowed``).
        keys: (N, D) unit rows per dataset row, any float dtype (float16 queues are scored in float32).
        slot_rows: (C,) dataset row held by each queue slot (-1 = empty).
        slot_valid: (C,) slot may be drawn at all (filled, non-empty).
        k: neighbours.
        allowed: ``allowed(anchors (B, 1), rows (B, M)) -> (B, M) bool``: per-anchor exclusions.

    Returns:
        vals (B, k) float32 sorted descending (-inf where fewer than k allowed slots exist) and
        slots (B, k) long (-1 there).
    """
    b, dev = query.shape[0], query.device
    m = k + margin
    vals = torch.full((b, m), -float("inf"), device=dev)
    slots = torch.full((b, m), -1, dtype=torch.long, device=dev)
    bias = torch.zeros(slot_rows.shape[0], device=dev).masked_fill_(~slot_valid, -float("inf"))
    for start in range(0, slot_rows.shape[0], chunk):
        rows = slot_rows[start : start + chunk]
        sim = query @ keys[rows.clamp_min(0)].float().T  # (B, C)
        vals, slots = _top(sim.add_(bias[start : start + chunk]), m, vals, slots, start)
    ok = torch.isfinite(vals) & allowed(anchors[:, None], slot_rows[slots.clamp_min(0)])
    # Complete: k allowed found, or every valid slot was a candidate (a -inf among the m).
    redo = (ok.sum(1) < k) & torch.isfinite(vals[:, -1])
    vals = vals.masked_fill(~ok, -float("inf"))
    vals, pos = vals.topk(k, dim=1)
    slots = torch.where(torch.isfinite(vals), slots.gather(1, pos), -1)
    if bool(redo.any()):
        p = redo.nonzero().squeeze(1)
        vals[p], slots[p] = _exact(query[p], anchors[p], keys, slot_rows, slot_valid, k, allowed, chunk)
    return vals, slots


def _exact(query, anchors, keys, slot_rows, slot_valid, k, allowed, chunk):
    """The full (anchor, entry) mask: for the few anchors whose excluded neighbours crowd the candidates."""
    b, dev = query.shape[0], query.device
    vals = torch.full((b, k), -float("inf"), device=dev)
    slots = torch.full((b, k), -1, dtype=torch.long, device=dev)
    for start in range(0, slot_rows.shape[0], chunk):
        rows = slot_rows[start : start + chunk]
        sim = query @ keys[rows.clamp_min(0)].float().T
        ok = slot_valid[start : start + chunk][None] & allowed(anchors[:, None], rows[None])
        vals, slots = _top(sim.masked_fill_(~ok, -float("inf")), k, vals, slots, start)
    return vals, torch.where(torch.isfinite(vals), slots, -1)
