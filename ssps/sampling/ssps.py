"""The SSPS positive sampler: three calls for the training loop.

1. ``write_reference(indices, emb)`` / ``write_positive(indices, emb)`` after each step (no gradient);
2. ``cluster(seed)`` once per epoch (or every ``ssps.refresh_every_steps``);
3. ``sample(anchor_indices, step)`` -> :class:`SampleResult`, the pseudo-positives for the batch.

Samplers (``ssps.sampling``), all vectorised over the batch:

- ``kmeans-repr``: the anchor's cluster c (its reference embedding's assignment), one of the M nearest
  other clusters picked uniformly (M = 0: c itself), then one positive-queue entry of that cluster
  picked uniformly among the allowed ones; its stored embedding is the positive.
- ``kmeans``: the centroid of that chosen cluster is the positive (``source_indices`` stays -1).
- ``knn``: the ``knn_neighbours`` nearest positive-queue entries by reference-embedding cosine (exact
  search over the live queues, chunked), one picked uniformly.
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

Distributed: the queues are gathered before every write, so ``cluster`` sees the same data on every rank
(and broadcasts rank 0's result). Each rank samples for its own anchors with a generator seeded from
(seed, step, rank), so a run is reproducible for a fixed world size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ssps import dist
from ssps.config import SSPSConfig
from ssps.errors import SSPSError
from ssps.registry import Registry
from ssps.sampling.channel import N_MELS as CHANNEL_MELS
from ssps.sampling.channel import fingerprint_keys
from ssps.sampling.kmeans import nearest_clusters, spherical_kmeans
from ssps.sampling.queue import PositiveQueue, ReferenceQueue, queue_dtype
from ssps.sampling.search import CHUNK, knn_search

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


def uses_labels(cfg: SSPSConfig) -> bool:
    """The sampler reads speaker labels (the supervised upper bound, never a self-supervised result)."""
    return cfg.sampling == "oracle"


def uses_sessions(cfg: SSPSConfig) -> bool:
    """The sampler reads the session column (recording metadata: "+ session metadata" in every result)."""
    return cfg.exclude_same_session or cfg.session_pooling or uses_labels(cfg)


def _mix_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 0x9E3779B1 + step * 0x85EBCA77 + rank * 0xC2B2AE3D + 1) % (1 << 62)


class SSPSSampler(nn.Module):
    """Memory queues, clustering state and the pseudo-positive draw of SSPS.

    Args:
        cfg: the ``ssps`` config section.
        num_items: N, the number of training utterances (dataset indices 0..N-1).
        ref_dim: D, the reference (encoder output) embedding size.
        pos_shape: shape of one stored positive, e.g. ``(512,)`` or ``(2, 256)``.
        speaker_ids: (N,) long, -1 unknown: speaker LABELS, accepted only by the ``oracle`` sampler.
        session_ids: (N,) long, -1 unknown: recording metadata, accepted only when a setting uses it
            (``exclude_same_session``, ``session_pooling``, or ``oracle``).

    Label-free by construction: a sampler that does not use labels (or metadata) is never handed them,
    so it cannot draw differently when the speaker column is permuted or removed (tests/test_label_free.py).
    Diagnostics that compare draws with labels live outside (:mod:`ssps.sampling.diagnostics`).
        seed: base seed of the draws.
    """

    def __init__(
        self,
        cfg: SSPSConfig,
        num_items: int,
        ref_dim: int,
        pos_shape: tuple[int, ...],
        speaker_ids: torch.Tensor | None = None,
        session_ids: torch.Tensor | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if cfg.sampling not in SAMPLERS:
            names = ", ".join(SAMPLERS.names())
            raise SSPSError(f"ssps.sampling: expected one of {names}, got {cfg.sampling!r}")
        if cfg.positive_queue_size < 1:
            raise SSPSError(f"ssps.positive_queue_size: expected >= 1, got {cfg.positive_queue_size}")
        if cfg.nearest_clusters < 0 or cfg.num_clusters < 1:
            raise SSPSError(
                f"ssps.num_clusters must be >= 1 and ssps.nearest_clusters >= 0, "
                f"got {cfg.num_clusters} and {cfg.nearest_clusters}"
            )
        self.cfg, self.seed, self.pos_shape = cfg, seed, tuple(pos_shape)
        if cfg.sampling == "kmeans" and self.pos_shape != (ref_dim,):
            raise SSPSError(f"ssps.sampling=kmeans: positives need shape ({ref_dim},), got {self.pos_shape}")
        if cfg.sampling == "oracle" and speaker_ids is None:
            raise SSPSError("ssps.sampling=oracle needs speaker labels (no speaker column)")
        if cfg.sampling != "oracle" and speaker_ids is not None:
            raise SSPSError(
                f"ssps.sampling={cfg.sampling} is label-free: it must not be given speaker labels"
            )
        if cfg.exclude_same_session and session_ids is None:
            raise SSPSError("ssps.exclude_same_session needs session ids (no session column)")
        if cfg.session_pooling and session_ids is None:
            raise SSPSError("ssps.session_pooling needs session ids (no session column)")
        if session_ids is not None and not uses_sessions(cfg):
            raise SSPSError(
                "SSPS without session metadata (ssps.exclude_same_session=false, ssps.session_pooling=false) "
                "must not be given session ids"
            )
        dtype = queue_dtype(cfg.queue_dtype)
        self.reference = ReferenceQueue(num_items, ref_dim, dtype, persistent=False)
        # ssps.exclude_same_channel: each utterance's channel statistics (ssps.sampling.channel), raw, and
        # the recording cluster cluster() puts it in (-1 unknown).
        channel_dim = 2 * CHANNEL_MELS if cfg.exclude_same_channel else 0
        self.channel = ReferenceQueue(num_items, channel_dim, dtype, persistent=False, normalise=False)
        self.positive = PositiveQueue(cfg.positive_queue_size, self.pos_shape, dtype, persistent=False)
        unknown = torch.full((num_items,), -1, dtype=torch.long)
        for name, ids in (("speaker_ids", speaker_ids), ("session_ids", session_ids)):
            ids = unknown if ids is None else torch.as_tensor(ids, dtype=torch.long)
            if ids.shape != (num_items,):
                raise SSPSError(f"SSPS {name}: expected {num_items} values, got shape {tuple(ids.shape)}")
            self.register_buffer(name, ids.clone(), persistent=False)
        self.register_buffer("assignments", unknown.clone(), persistent=False)
        self.register_buffer("channel_assignments", unknown.clone(), persistent=False)
        # ssps.session_pooling, rebuilt by cluster(): one normalised mean reference embedding per session
        # (S, D), each utterance's row in it (N,), -1 when unknown, and the per-utterance view (N, D).
        self.register_buffer("session_keys", torch.zeros(0, ref_dim), persistent=False)
        self.register_buffer("session_row", unknown.clone(), persistent=False)
        self.register_buffer("pooled", torch.zeros(0, ref_dim, dtype=dtype), persistent=False)
        self.register_buffer("centroids", torch.zeros(0, ref_dim), persistent=False)
        self.register_buffer("neighbours", torch.zeros(0, 0, dtype=torch.long), persistent=False)

    # ---- 1. write the step's embeddings -------------------------------------------------------
    def write_reference(self, indices: torch.Tensor, emb: torch.Tensor) -> None:
        """(B,) dataset indices, (B, D) reference-frame encoder outputs (normalised when stored)."""
        self.reference.write(indices, emb)

    @property
    def needs_channel(self) -> bool:
        """Whether the loop must hand in channel statistics (:meth:`write_channel`)."""
        return self.cfg.exclude_same_channel

    def write_channel(self, indices: torch.Tensor, stats: torch.Tensor) -> None:
        """(B,) dataset indices, (B, 2 * n_mels) channel statistics of the reference frames (raw)."""
        self.channel.write(indices, stats)

    def write_positive(self, indices: torch.Tensor, emb: torch.Tensor) -> None:
        """(B,) dataset indices, (B, *pos_shape) detached positive-branch outputs."""
        self.positive.write(indices, emb)

    # ---- 2. re-cluster -------------------------------------------------------------------------
    @torch.no_grad()
    def cluster(self, seed: int = 0) -> dict[str, float]:
        """k-means on the filled reference entries; returns figures for the log.

        K is capped at the number of filled entries and M at K - 1. ``knn`` and ``oracle`` need no index.
        """
        filled = self.reference.filled.nonzero().squeeze(1)
        if filled.numel() == 0:
            raise SSPSError("ssps: reference queue empty; SSPS needs one epoch to fill it (ssps.start_epoch)")
        if self.cfg.session_pooling:
            self.pooled = self._session_means(filled)
        if self.cfg.exclude_same_channel:
            self._cluster_channels(seed)
        if self.cfg.sampling not in ("kmeans-repr", "kmeans") and not self.cfg.exclude_own_cluster:
            return {"filled": float(filled.numel())}
        k = min(self.cfg.num_clusters, filled.numel())
        res = spherical_kmeans(self.keys()[filled], k, self.cfg.kmeans_iterations, seed)
        self.assignments.fill_(-1)
        self.assignments[filled] = res.assignments
        self.centroids = res.centroids
        m = min(self.cfg.nearest_clusters, k - 1)
        self.neighbours = dist.broadcast(nearest_clusters(res.centroids, m))
        n = filled.numel()
        return {"filled": float(n), "clusters": float(k), "inertia": res.inertia / n}

    def _cluster_channels(self, seed: int) -> None:
        """Recordings, label-free: spherical k-means of the standardised channel fingerprints."""
        filled = self.channel.filled.nonzero().squeeze(1)
        self.channel_assignments.fill_(-1)
        if filled.numel() == 0:
            return
        k = self.cfg.channel_clusters or max(1, filled.numel() // 8)
        keys = fingerprint_keys(self.channel.embeddings[filled].float())
        res = spherical_kmeans(keys, min(k, filled.numel()), self.cfg.kmeans_iterations, seed + 7919)
        self.channel_assignments[filled] = res.assignments

    def keys(self) -> torch.Tensor:
        """(N, D) what neighbours and clusters are computed on: each utterance's reference embedding or,
        with ``ssps.session_pooling``, the normalised mean over its recording session (same speaker,
        averaged over the session's utterances: a less noisy key than one utterance)."""
        return self.pooled if self.cfg.session_pooling and self.pooled.numel() else self.reference.embeddings

    def _session_means(self, filled: torch.Tensor) -> torch.Tensor:
        emb = self.reference.embeddings[filled].float()  # (F, D)
        sess = self.session_ids[filled]
        known = sess >= 0
        groups, inverse = torch.unique(sess[known], return_inverse=True)
        sums = torch.zeros(len(groups), emb.shape[1], device=emb.device).index_add_(0, inverse, emb[known])
        self.session_keys = torch.nn.functional.normalize(sums, dim=1)
        self.session_row.fill_(-1)
        self.session_row[filled[known]] = inverse
        keys = self.reference.embeddings.clone()  # unknown sessions keep their own embedding
        keys[filled[known]] = self.session_keys[inverse].to(keys.dtype)
        return keys

    # ---- 3. draw pseudo-positives --------------------------------------------------------------
    @torch.no_grad()
    def sample(self, anchor_indices: torch.Tensor, step: int) -> SampleResult:
        """Pseudo-positives for (B,) anchor dataset indices; ``step`` seeds this batch's draw."""
        anchors = anchor_indices.to(self.assignments.device, torch.long)
        g = torch.Generator(device=anchors.device)
        g.manual_seed(_mix_seed(self.seed, step, dist.rank()))
        return SAMPLERS.get(self.cfg.sampling)(self, anchors, g)

    # ---- helpers shared by the samplers --------------------------------------------------------
    def _allowed(self, anchors: torch.Tensor, entries: torch.Tensor, same_session: bool) -> torch.Tensor:
        """Broadcastable bool: entry utterance may be a positive for the anchor utterance."""
        ok = entries != anchors
        # Label-free stand-ins for the anchor's recording: its own cluster, or its fingerprint cluster.
        for flag, groups in (
            (self.cfg.exclude_own_cluster, self.assignments),
            (self.cfg.exclude_same_channel, self.channel_assignments),
        ):
            if flag:
                c = groups[anchors]
                ok &= (groups[entries.clamp_min(0)] != c) | (c < 0)
        if same_session:
            s = self.session_ids[anchors]
            ok &= (self.session_ids[entries.clamp_min(0)] != s) | (s < 0)
        return ok

    def _draw_in_groups(
        self, entry_group: torch.Tensor, target: torch.Tensor, anchors: torch.Tensor, g, same_session: bool
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
        qidx = self.positive.indices
        pending = count > 0
        for _ in range(REJECTION_TRIES):
            r = (torch.rand(b, generator=g, device=dev) * count).long().clamp_max((count - 1).clamp_min(0))
            slot = order[(start + r).clamp_max(n_valid - 1)]
            ok = pending & self._allowed(anchors, qidx[slot], same_session)
            chosen = torch.where(ok, slot, chosen)
            pending &= ~ok
            if not bool(pending.any()):
                return chosen
        # Exact resolution for the rest: every slot of the segment, a uniform key, argmax over allowed.
        p = pending.nonzero().squeeze(1)
        width = int(count[p].max())
        offs = torch.arange(width, device=dev)
        slots = order[(start[p, None] + offs).clamp_max(n_valid - 1)]  # (P, width)
        ok = (offs < count[p, None]) & self._allowed(anchors[p, None], qidx[slots], same_session)
        keys = torch.rand(p.shape[0], width, generator=g, device=dev).masked_fill_(~ok, -1.0)
        pick = slots.gather(1, keys.argmax(1, keepdim=True)).squeeze(1)
        chosen[p] = torch.where(ok.any(1), pick, -1)
        return chosen

    def _from_slots(self, slots: torch.Tensor) -> SampleResult:
        found = slots >= 0
        safe = slots.clamp_min(0)
        positives = self.positive.embeddings[safe].float()
        positives[~found] = 0.0
        source = torch.where(found, self.positive.indices[safe], -1)
        return SampleResult(positives, found, source)

    def _chosen_clusters(self, anchors: torch.Tensor, g) -> torch.Tensor:
        """(B,) cluster drawn uniformly among the anchor's M nearest other ones (-1: anchor unclustered)."""
        if self.centroids.shape[0] == 0:
            raise RuntimeError("SSPSSampler.cluster() must run before sample() with k-means sampling")
        c = self.assignments[anchors]
        m = self.neighbours.shape[1]
        if m == 0:
            return c
        j = torch.randint(0, m, c.shape, generator=g, device=c.device)
        return torch.where(c >= 0, self.neighbours[c.clamp_min(0), j], -1)

    # ---- state ---------------------------------------------------------------------------------
    def queue_state(self) -> dict[str, torch.Tensor]:
        """Queues and clustering, for a checkpoint (``ssps.save_queues``)."""
        names = ["assignments", "centroids", "neighbours"]
        state = {n: getattr(self, n) for n in names}
        state.update({f"reference.{k}": v for k, v in self.reference.named_buffers()})
        if self.cfg.exclude_same_channel:
            state.update({f"channel.{k}": v for k, v in self.channel.named_buffers()})
            state["channel_assignments"] = self.channel_assignments
        state.update({f"positive.{k}": v for k, v in self.positive.named_buffers()})
        return state

    def load_queue_state(self, state: dict[str, torch.Tensor]) -> None:
        mine = self.queue_state()
        if set(state) != set(mine):
            raise SSPSError(f"SSPS queue state: expected keys {sorted(mine)}, got {sorted(state)}")
        for name, value in state.items():
            if name in ("centroids", "neighbours"):
                setattr(self, name, value.to(mine[name].device))
            elif value.shape != mine[name].shape:
                raise SSPSError(
                    f"queue state: {name} has shape {tuple(value.shape)}, expected {tuple(mine[name].shape)}"
                )
            else:
                mine[name].copy_(value)

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        # The queues enter state_dict only when asked: otherwise the loop refills them in one epoch.
        return self.queue_state() if self.cfg.save_queues else {}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self.load_queue_state(state)

    def memory_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers())


@SAMPLERS.register("kmeans-repr")
def _sample_kmeans_repr(s: SSPSSampler, anchors: torch.Tensor, g) -> SampleResult:
    target = s._chosen_clusters(anchors, g)
    qidx = s.positive.indices
    entry_group = torch.where(qidx >= 0, s.assignments[qidx.clamp_min(0)], -1)
    return s._from_slots(s._draw_in_groups(entry_group, target, anchors, g, s.cfg.exclude_same_session))


@SAMPLERS.register("kmeans")
def _sample_kmeans(s: SSPSSampler, anchors: torch.Tensor, g) -> SampleResult:
    target = s._chosen_clusters(anchors, g)
    found = target >= 0
    positives = s.centroids[target.clamp_min(0)].float() * found[:, None]
    return SampleResult(positives, found, torch.full_like(anchors, -1))


@SAMPLERS.register("oracle")
def _sample_oracle(s: SSPSSampler, anchors: torch.Tensor, g) -> SampleResult:
    # Uses speaker labels: the supervised upper bound. Same speaker, another session when sessions are known.
    qidx = s.positive.indices
    entry_group = torch.where(qidx >= 0, s.speaker_ids[qidx.clamp_min(0)], -1)
    return s._from_slots(s._draw_in_groups(entry_group, s.speaker_ids[anchors], anchors, g, True))


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
    return s._from_slots(s._draw_in_groups(entry_row, target, anchors, g, s.cfg.exclude_same_session))


@SAMPLERS.register("knn")
def _sample_knn(s: SSPSSampler, anchors: torch.Tensor, g) -> SampleResult:
    if s.cfg.session_pooling and s.session_keys.numel():
        return _sample_knn_sessions(s, anchors, g)
    k, b, dev = s.cfg.knn_neighbours, anchors.shape[0], anchors.device
    ref, qidx, keys = s.reference, s.positive.indices, s.keys()
    valid = (qidx >= 0) & ref.filled[qidx.clamp_min(0)]
    vals, slots = knn_search(
        keys[anchors].float(),  # (B, D), unit rows where filled
        anchors,
        keys,
        qidx,
        valid,
        k,
        lambda a, rows: s._allowed(a, rows, s.cfg.exclude_same_session),
    )
    # topk is sorted, so the n_ok finite neighbours come first: draw an offset among them.
    n_ok = torch.isfinite(vals).sum(1) * ref.filled[anchors]
    r = (torch.rand(b, generator=g, device=dev) * n_ok).long().clamp_max((n_ok - 1).clamp_min(0))
    chosen = torch.where(n_ok > 0, slots.gather(1, r[:, None]).squeeze(1), -1)
    return s._from_slots(chosen)
