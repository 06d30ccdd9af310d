"""The SSPS positive sampler: three calls for the training loop.

1. ``write_reference(indices, emb)`` / ``write_positive(indices, emb)`` after each step (no gradient);
2. ``cluster(seed)`` once per epoch (or every ``ssps.refresh_every_steps``);
3. ``sample(anchor_indices, step)`` -> :class:`SampleResult`, the pseudo-positives for the batch.

The draws themselves live in :mod:`ssps.sampling.draws`.

Distributed: the queues are gathered before every write, so ``cluster`` sees the same data on every rank
(and broadcasts rank 0's result). Every rank draws for the gathered batch with a generator seeded from
(seed, step) and keeps its own rows, so a run draws the same positives on any number of ranks.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssps import dist
from ssps.config import SSPSConfig
from ssps.errors import SSPSError
from ssps.sampling.channel import N_MELS as CHANNEL_MELS
from ssps.sampling.channel import fingerprint_keys
from ssps.sampling.draws import KNN_CHUNK, SAMPLERS, SampleResult, mix_seed
from ssps.sampling.kmeans import nearest_clusters, spherical_kmeans
from ssps.sampling.queue import PositiveQueue, ReferenceQueue, queue_dtype


def uses_labels(cfg: SSPSConfig) -> bool:
    """The sampler reads speaker labels (``oracle``, the supervised upper bound, or ``oracle_filter``, a
    diagnostic): never a self-supervised result."""
    return cfg.sampling == "oracle" or cfg.oracle_filter


def uses_sessions(cfg: SSPSConfig) -> bool:
    """The sampler reads the session column (recording metadata: "+ session metadata" in every result)."""
    return cfg.exclude_same_session or cfg.session_pooling or cfg.sampling == "oracle"


# Buffers whose size cluster() decides (K clusters, S sessions); loaded by replacement, not copy.
RESIZED = ("centroids", "neighbours", "session_keys", "pooled")

__all__ = ["KNN_CHUNK", "SAMPLERS", "SSPSSampler", "SampleResult", "uses_labels", "uses_sessions"]


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
        seed: base seed of the draws.

    Label-free by construction: a sampler that does not use labels (or metadata) is never handed them,
    so it cannot draw differently when the speaker column is permuted or removed (tests/test_label_free.py).
    Diagnostics that compare draws with labels live outside (:mod:`ssps.sampling.diagnostics`).
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
        if cfg.mutual_neighbours < 0 or (
            cfg.mutual_neighbours and (cfg.sampling != "knn" or cfg.session_pooling)
        ):
            raise SSPSError(
                f"ssps.mutual_neighbours: expected 0 or a positive count with ssps.sampling=knn over "
                f"utterances (no ssps.session_pooling), got {cfg.mutual_neighbours} with {cfg.sampling}"
            )
        if not 0 < cfg.margin_keep <= 1 or cfg.margin_rank < 1:
            raise SSPSError(
                f"ssps.margin_keep: expected a share in (0, 1] and ssps.margin_rank >= 1, got "
                f"{cfg.margin_keep} and {cfg.margin_rank}"
            )
        if cfg.margin_keep < 1 and (cfg.sampling != "knn" or cfg.session_pooling or cfg.mutual_neighbours):
            raise SSPSError(
                f"ssps.margin_keep={cfg.margin_keep} filters knn candidates over utterances: it needs "
                f"ssps.sampling=knn without ssps.session_pooling or ssps.mutual_neighbours "
                f"(got {cfg.sampling})"
            )
        if not 0 <= cfg.oracle_filter_share <= 1:
            raise SSPSError(
                f"ssps.oracle_filter_share: expected a share in [0, 1], got {cfg.oracle_filter_share}"
            )
        if cfg.oracle_filter and cfg.sampling in ("oracle", "kmeans"):
            raise SSPSError(
                f"ssps.oracle_filter drops drawn utterances of another speaker; ssps.sampling={cfg.sampling} "
                "draws none to check (oracle: always the speaker; kmeans: centroids)"
            )
        if cfg.sampling == "kmeans" and self.pos_shape != (ref_dim,):
            raise SSPSError(f"ssps.sampling=kmeans: positives need shape ({ref_dim},), got {self.pos_shape}")
        if uses_labels(cfg) and speaker_ids is None:
            raise SSPSError(
                "ssps.sampling=oracle / ssps.oracle_filter need speaker labels (no speaker column)"
            )
        if not uses_labels(cfg) and speaker_ids is not None:
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
        # bfloat16 is for the searched keys (ssps.sampling.search); what the loss reads stays float16.
        stored = torch.float16 if dtype == torch.bfloat16 else dtype
        self.reference = ReferenceQueue(num_items, ref_dim, dtype, persistent=False)
        # ssps.exclude_same_channel: each utterance's channel statistics (ssps.sampling.channel), raw, and
        # the recording cluster cluster() puts it in (-1 unknown).
        channel_dim = 2 * CHANNEL_MELS if cfg.exclude_same_channel else 0
        self.channel = ReferenceQueue(num_items, channel_dim, stored, persistent=False, normalise=False)
        self.positive = PositiveQueue(cfg.positive_queue_size, self.pos_shape, stored, persistent=False)
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
        """Pseudo-positives for (B,) anchor dataset indices; ``step`` seeds this batch's draw.

        Distributed, every rank draws for the whole gathered batch with the same generator and keeps its
        slice, so the draws do not depend on the number of ranks (W times the draw's cost, which is small
        next to a training step; B's are equal on every rank).
        """
        anchors = anchor_indices.to(self.assignments.device, torch.long)
        everyone = dist.gather(anchors)
        g = torch.Generator(device=anchors.device)
        g.manual_seed(mix_seed(self.seed, step, 0))
        res = SAMPLERS.get(self.cfg.sampling)(self, everyone, g)
        if self.cfg.oracle_filter:  # reads the labels: a diagnostic of what the wrong draws cost
            same = self.speaker_ids[res.source_indices.clamp_min(0)] == self.speaker_ids[everyone]
            share = self.cfg.oracle_filter_share
            drop = (
                ~same
                if share >= 1
                else ~same & (torch.rand(same.shape, generator=g, device=g.device) < share)
            )
            kept = res.found & ~drop
            keep = kept.view(-1, *[1] * (res.positives.dim() - 1))
            res = SampleResult(res.positives * keep, kept, torch.where(kept, res.source_indices, -1))
        if everyone.shape[0] == anchors.shape[0]:
            return res
        b, r = anchors.shape[0], dist.rank()
        part = slice(r * b, (r + 1) * b)
        return SampleResult(res.positives[part], res.found[part], res.source_indices[part])

    # ---- state ---------------------------------------------------------------------------------
    def queue_state(self) -> dict[str, torch.Tensor]:
        """Queues, clustering and session-pooling state, for a checkpoint (``ssps.save_queues``): with it a
        run resumed mid-epoch draws exactly what the uninterrupted run draws."""
        names = ["assignments", *RESIZED]
        if self.cfg.session_pooling:
            names.append("session_row")
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
            if name in RESIZED:  # their size is set by cluster()
                setattr(self, name, value.to(mine[name].device, mine[name].dtype))
            elif value.shape != mine[name].shape:
                raise SSPSError(
                    f"queue state: {name} has shape {tuple(value.shape)}, expected {tuple(mine[name].shape)}"
                )
            else:
                mine[name].copy_(value)

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        # The queues enter state_dict only when asked (the default): otherwise a resumed run refills them.
        return self.queue_state() if self.cfg.save_queues else {}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self.load_queue_state(state)

    def memory_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers())
