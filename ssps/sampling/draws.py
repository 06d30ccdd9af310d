"""The pseudo-positive draws of SSPS, one registered function per ``ssps.sampling`` value.

Each takes the sampler (its queues and clustering state), the (B,) anchor dataset indices and a
generator, and returns a :class:`SampleResult`.

Samplers (``ssps.sampling``), all vectorised over the batch:

- ``kmeans-repr``: the anchor's cluster c (its reference embedding's assignment), one of the M nearest
  other clusters picked uniformly (M = 0: c itself), then one positive-queue entry of that cluster
  picked uniformly among the allowed ones; its stored embedding is the positive.
- ``kmeans``: the centroid of that chosen cluster is the positive (``source_indices`` stays -1).
- ``knn``: the ``knn_neighbours`` nearest positive-queue entries by reference-embedding cosine (exact
  search over the live queues, chunked), one picked uniformly; with ``mutual_neighbours`` m only among
  those that have the anchor among their own m nearest (mutual neighbours, label-free); with
  ``margin_keep`` p < 1 only among the batch's share p of candidates that stand out most from the anchor's
  ``margin_rank``-th neighbour (label-free).
- ``oracle`` (uses SPEAKER LABELS; the supervised upper bound, never a self-supervised result): a
  positive-queue entry of the same speaker from another session.

Allowed entries exclude the anchor's own utterance, and its session when ``exclude_same_session`` (always
for ``oracle``; session -1 = unknown excludes nothing). An anchor without an allowed candidate gets
``found = False`` and a zero row: the loop keeps its same-utterance positive.

Uniform draw over the allowed candidates: the queue entries are sorted by group (cluster or speaker), so
each group is a segment ``[start, start + count)`` of the sorted order; each anchor draws a uniform offset
in its segment and rejects a disallowed entry, up to ``REJECTION_TRIES`` times (conditioned on acceptance
this is uniform over the allowed entries); anchors still pending are resolved exactly by masking their
whole segment and taking the argmax of uniform random keys over the allowed entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ssps.registry import Registry
from ssps.sampling.search import CHUNK, knn_search

if TYPE_CHECKING:
    from ssps.sampling.ssps import SSPSSampler

SAMPLERS = Registry("ssps sampler")
REJECTION_TRIES = 4
KNN_CHUNK = CHUNK  # queue entries scored per matmul in knn (ssps.sampling.search)


@dataclass(frozen=True)
class SampleResult:
    """positives (B, *pos_shape) float32 (zero rows where not found); found (B,) bool;
    source_indices (B,) long: dataset index of the drawn entry, -1 when not found (and for ``kmeans``)."""

    positives: torch.Tensor
    found: torch.Tensor
    source_indices: torch.Tensor

    @property
    def coverage(self) -> float:
        return float(self.found.float().mean()) if self.found.numel() else 0.0


def mix_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 0x9E3779B1 + step * 0x85EBCA77 + rank * 0xC2B2AE3D + 1) % (1 << 62)


def allowed(s: SSPSSampler, anchors: torch.Tensor, entries: torch.Tensor, same_session: bool) -> torch.Tensor:
    """Broadcastable bool: entry utterance may be a positive for the anchor utterance."""
    ok = entries != anchors
    # Label-free stand-ins for the anchor's recording: its own cluster, or its fingerprint cluster.
    for flag, groups in (
        (s.cfg.exclude_own_cluster, s.assignments),
        (s.cfg.exclude_same_channel, s.channel_assignments),
    ):
        if flag:
            c = groups[anchors]
            ok &= (groups[entries.clamp_min(0)] != c) | (c < 0)
    if same_session:
        own = s.session_ids[anchors]
        ok &= (s.session_ids[entries.clamp_min(0)] != own) | (own < 0)
    return ok


def draw_in_groups(
    s: SSPSSampler,
    entry_group: torch.Tensor,
    target: torch.Tensor,
    anchors: torch.Tensor,
    g,
    same_session: bool,
) -> torch.Tensor:
    """(B,) queue slot drawn uniformly among allowed slots with ``entry_group == target``; -1 if none."""
    b, dev = anchors.shape[0], anchors.device
    chosen = torch.full((b,), -1, dtype=torch.long, device=dev)
    valid = entry_group >= 0
    n_valid = int(valid.sum())
    if n_valid == 0 or b == 0:
        return chosen
    # Invalid slots get a key past every group so they sort to the end and are cut off.
    key = torch.where(valid, entry_group, entry_group.max() + 1)
    sorted_group, order = torch.sort(key, stable=True)
    sorted_group, order = sorted_group[:n_valid].contiguous(), order[:n_valid]
    start = torch.searchsorted(sorted_group, target)
    count = torch.searchsorted(sorted_group, target, right=True) - start  # 0 for target -1
    qidx = s.positive.indices
    pending = count > 0
    for _ in range(REJECTION_TRIES):
        r = (torch.rand(b, generator=g, device=dev) * count).long().clamp_max((count - 1).clamp_min(0))
        slot = order[(start + r).clamp_max(n_valid - 1)]
        ok = pending & allowed(s, anchors, qidx[slot], same_session)
        chosen = torch.where(ok, slot, chosen)
        pending &= ~ok
        if not bool(pending.any()):
            return chosen
    # Exact resolution for the rest: every slot of the segment, a uniform key, argmax over allowed.
    p = pending.nonzero().squeeze(1)
    width = int(count[p].max())
    offs = torch.arange(width, device=dev)
    slots = order[(start[p, None] + offs).clamp_max(n_valid - 1)]  # (P, width)
    ok = (offs < count[p, None]) & allowed(s, anchors[p, None], qidx[slots], same_session)
    keys = torch.rand(p.shape[0], width, generator=g, device=dev).masked_fill_(~ok, -1.0)
    pick = slots.gather(1, keys.argmax(1, keepdim=True)).squeeze(1)
    chosen[p] = torch.where(ok.any(1), pick, -1)
    return chosen


def from_slots(s: SSPSSampler, slots: torch.Tensor) -> SampleResult:
    found = slots >= 0
    safe = slots.clamp_min(0)
    positives = s.positive.embeddings[safe].float()
    positives[~found] = 0.0
    source = torch.where(found, s.positive.indices[safe], -1)
    return SampleResult(positives, found, source)


def chosen_clusters(s: SSPSSampler, anchors: torch.Tensor, g) -> torch.Tensor:
    """(B,) cluster drawn uniformly among the anchor's M nearest other ones (-1: anchor unclustered)."""
    if s.centroids.shape[0] == 0:
        raise RuntimeError("SSPSSampler.cluster() must run before sample() with k-means sampling")
    c = s.assignments[anchors]
    m = s.neighbours.shape[1]
    if m == 0:
        return c
    j = torch.randint(0, m, c.shape, generator=g, device=c.device)
    return torch.where(c >= 0, s.neighbours[c.clamp_min(0), j], -1)


@SAMPLERS.register("kmeans-repr")
def _sample_kmeans_repr(s: SSPSSampler, anchors: torch.Tensor, g) -> SampleResult:
    target = chosen_clusters(s, anchors, g)
    qidx = s.positive.indices
    entry_group = torch.where(qidx >= 0, s.assignments[qidx.clamp_min(0)], -1)
    return from_slots(s, draw_in_groups(s, entry_group, target, anchors, g, s.cfg.exclude_same_session))


@SAMPLERS.register("kmeans")
def _sample_kmeans(s: SSPSSampler, anchors: torch.Tensor, g) -> SampleResult:
    target = chosen_clusters(s, anchors, g)
    found = target >= 0
    positives = s.centroids[target.clamp_min(0)].float() * found[:, None]
    return SampleResult(positives, found, torch.full_like(anchors, -1))


@SAMPLERS.register("oracle")
def _sample_oracle(s: SSPSSampler, anchors: torch.Tensor, g) -> SampleResult:
    # Uses speaker labels: the supervised upper bound. Same speaker, another session when sessions are known.
    qidx = s.positive.indices
    entry_group = torch.where(qidx >= 0, s.speaker_ids[qidx.clamp_min(0)], -1)
    return from_slots(s, draw_in_groups(s, entry_group, s.speaker_ids[anchors], anchors, g, True))


def _sample_knn_sessions(s: SSPSSampler, anchors: torch.Tensor, g) -> SampleResult:
    """knn over sessions (``ssps.session_pooling``): one of the anchor's k nearest *other sessions* (by
    session-mean embedding, among sessions present in the positive queue), then a uniform entry of it.

    Ranking distinct sessions, not utterances, matters: the k nearest utterances would all come from the one
    nearest session, so each session would only ever be pulled towards its single most similar recording.
    """
    qidx, rows = s.positive.indices, s.session_row
    n_sessions, dev = s.session_keys.shape[0], anchors.device
    entry_row = torch.where(qidx >= 0, rows[qidx.clamp_min(0)], -1)
    present = torch.zeros(n_sessions + 1, dtype=torch.bool, device=dev)
    present[entry_row.clamp_min(-1) + 1] = True  # slot 0 collects unknown / empty entries
    own = rows[anchors]  # (B,)
    sim = s.session_keys[own.clamp_min(0)] @ s.session_keys.T  # (B, S)
    blocked = ~present[1:][None] | (torch.arange(n_sessions, device=dev)[None] == own[:, None])
    vals, top = sim.masked_fill_(blocked, -float("inf")).topk(min(s.cfg.knn_neighbours, n_sessions), dim=1)
    n_ok = torch.isfinite(vals).sum(1) * (own >= 0)
    r = (
        (torch.rand(anchors.shape[0], generator=g, device=dev) * n_ok)
        .long()
        .clamp_max((n_ok - 1).clamp_min(0))
    )
    target = torch.where(n_ok > 0, top.gather(1, r[:, None]).squeeze(1), -1)
    return from_slots(s, draw_in_groups(s, entry_row, target, anchors, g, s.cfg.exclude_same_session))


@SAMPLERS.register("knn")
def _sample_knn(s: SSPSSampler, anchors: torch.Tensor, g) -> SampleResult:
    if s.cfg.session_pooling and s.session_keys.numel():
        return _sample_knn_sessions(s, anchors, g)
    k, b, dev = s.cfg.knn_neighbours, anchors.shape[0], anchors.device
    ref, qidx, keys = s.reference, s.positive.indices, s.keys()
    valid = (qidx >= 0) & ref.filled[qidx.clamp_min(0)]

    def search(rows: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The n nearest allowed queue slots of each dataset row (unit keys where filled)."""
        return knn_search(
            keys[rows].float(), rows, keys, qidx, valid, n,
            lambda a, entries: allowed(s, a, entries, s.cfg.exclude_same_session),
        )  # fmt: skip

    if s.cfg.margin_keep < 1:
        vals, slots = search(anchors, max(k, s.cfg.margin_rank))
        return from_slots(s, _draw_margin(s, anchors, vals, slots, g))
    vals, slots = search(anchors, k)
    if s.cfg.mutual_neighbours:
        return from_slots(s, _draw_mutual(s, anchors, vals, slots, search, g))
    # topk is sorted, so the n_ok finite neighbours come first: draw an offset among them.
    n_ok = torch.isfinite(vals).sum(1) * ref.filled[anchors]
    r = (torch.rand(b, generator=g, device=dev) * n_ok).long().clamp_max((n_ok - 1).clamp_min(0))
    chosen = torch.where(n_ok > 0, slots.gather(1, r[:, None]).squeeze(1), -1)
    return from_slots(s, chosen)


def _draw_mutual(s: SSPSSampler, anchors, vals: torch.Tensor, slots: torch.Tensor, search, g) -> torch.Tensor:
    """(B,) slot drawn uniformly among the anchor's knn candidates that have the anchor among their own
    ``mutual_neighbours`` nearest allowed entries (label-free: ranks of reference embeddings); -1 if none.
    ``search(rows, n)`` is the anchors' own knn search, run here for the candidates.

    The candidate's rank of the anchor is measured against the queue, so the anchor need not be in it: the
    anchor counts as a mutual neighbour when it is at least as close as the candidate's m-th neighbour.
    """
    b, k = slots.shape
    keys = s.keys()
    ok = torch.isfinite(vals) & s.reference.filled[anchors][:, None]
    flat = s.positive.indices[slots.clamp_min(0)].reshape(-1)  # (B * k) candidates' dataset rows
    m = s.cfg.mutual_neighbours
    theirs, _ = search(flat, m)
    worst = theirs[:, m - 1].view(b, k)  # the candidate's m-th neighbour (-inf: fewer than m allowed)
    back = (keys[flat].float() * keys[anchors].float().repeat_interleave(k, 0)).sum(1).view(b, k)
    ok &= back >= worst - 1e-5  # the anchor may be that m-th neighbour: same cosine, other rounding
    return _uniform_among(slots, ok, g)


def _uniform_among(slots: torch.Tensor, ok: torch.Tensor, g) -> torch.Tensor:
    """(B,) one of each row's ``ok`` slots, uniformly (the argmax of uniform keys); -1 where none is."""
    scores = torch.rand(ok.shape, generator=g, device=slots.device).masked_fill_(~ok, -1.0)
    pick = slots.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)
    return torch.where(ok.any(1), pick, -1)


def margins(vals: torch.Tensor, k: int, rank: int) -> torch.Tensor:
    """(B, k) margins of the k nearest candidates from (B, >= max(k, rank)) sorted cosines (-inf: none):
    each candidate's cosine minus the anchor's ``rank``-th (its farthest allowed one when it has fewer);
    -inf where a candidate is missing."""
    finite = torch.isfinite(vals)
    last = (finite.sum(1) - 1).clamp(min=0, max=rank - 1)  # the rank-th, or the last allowed one
    background = vals.gather(1, last[:, None])
    return torch.where(finite[:, :k], vals[:, :k] - background, -float("inf"))


def _draw_margin(s: SSPSSampler, anchors, vals: torch.Tensor, slots: torch.Tensor, g) -> torch.Tensor:
    """(B,) slot drawn uniformly among the anchor's knn candidates whose margin (:func:`margins`) is in the
    batch's top ``margin_keep`` share; -1 if none (label-free: cosines of reference embeddings only)."""
    k = s.cfg.knn_neighbours
    m = margins(vals, k, s.cfg.margin_rank)
    m[~s.reference.filled[anchors]] = -float("inf")
    finite = torch.isfinite(m)
    if not bool(finite.any()):
        return torch.full_like(anchors, -1)
    threshold = torch.quantile(m[finite], 1.0 - s.cfg.margin_keep)
    return _uniform_among(slots[:, :k], finite & (m >= threshold), g)
