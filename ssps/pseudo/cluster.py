"""Pseudo-speakers from embeddings, without labels: spherical k-means to a large K, then average-linkage
merging of the centroids down to a number of pseudo-speakers chosen by a label-free criterion.

Why two stages: average linkage gives good speaker clusters but needs all pairwise distances, which is
impossible on 1 M utterances and cheap on K centroids (K^2 / 2 distances); k-means to a large K (many
clusters per speaker) loses little, since a fine cluster rarely mixes speakers.

How the number of pseudo-speakers S is chosen (``criterion``), none of them reads labels:

- ``silhouette`` (default): cut the dendrogram at a geometric grid of S between ``min_speakers`` and
  ``max_speakers``; score each cut by the mean cosine silhouette of a fixed random subset of utterances
  (``silhouette_rows``); keep the best. The silhouette compares each utterance's mean distance to its own
  pseudo-speaker with that to the nearest other one, so it peaks where clusters are tight and apart.
- ``threshold``: cut the dendrogram where the average cosine distance between merged groups passes
  ``threshold`` (a value to choose on a development set).
- ``count``: exactly ``speakers`` pseudo-speakers (e.g. a known number of speakers, for ablations).

>>> g = np.random.default_rng(0)
>>> x = np.concatenate([np.eye(4)[i] + 0.05 * g.standard_normal((30, 4)) for i in range(4)])
>>> res = pseudo_labels(x, PseudoLabelConfig(clusters=12, max_speakers=8))
>>> res.num_speakers, [len(set(res.labels[i * 30 : (i + 1) * 30])) for i in range(4)]
(4, [1, 1, 1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import silhouette_score

from ssps.errors import SSPSError
from ssps.sampling.kmeans import spherical_kmeans

CRITERIA = ("silhouette", "threshold", "count")


@dataclass(frozen=True)
class PseudoLabelConfig:
    clusters: int = 0  # K of the first-stage k-means; 0 = N / 20 (VoxCeleb2: ~54,600)
    criterion: str = "silhouette"  # silhouette | threshold | count (see ssps/pseudo/cluster.py)
    speakers: int = 0  # criterion=count: the number of pseudo-speakers
    min_speakers: int = 2  # criterion=silhouette: the range searched
    max_speakers: int = 0  # 0 = K / 2
    candidates: int = 24  # criterion=silhouette: cuts tried (a geometric grid)
    silhouette_rows: int = 5000  # utterances the silhouette is computed on (fixed random subset)
    threshold: float = 0.5  # criterion=threshold: average cosine distance at which merging stops
    iterations: int = 10  # k-means iterations
    backend: str = "torch"  # torch | faiss (optional, for very large K on CPU)
    session_metadata: bool = False  # cluster session-mean embeddings: one pseudo-label per recording
    # Label-free stand-in for recordings: G k-means groups of the utterances' channel fingerprints (audio
    # only, ssps/sampling/channel.py); the group-mean embeddings are clustered and every utterance takes its
    # group's pseudo-speaker. 0 = off.
    channel_groups: int = 0
    # Share of each pseudo-speaker's utterances written out: those closest (cosine) to its mean embedding;
    # the rest, the likeliest to be another speaker, are left out of the supervised training. 1 = all.
    keep: float = 1.0
    # Cluster the embeddings after the label-free augmentation-WCCN back-end (ssps/eval/backend.py), fitted
    # on the manifest's audio with the checkpoint's augmentation: what augmentation moves is whitened away.
    wccn: bool = False
    wccn_views: int = 4
    # Weight a of each utterance's median F0 beside its embedding (ssps/pseudo/prosody.py): the clustered
    # cosine is (1 - a) cos(embeddings) + a cos(pitch angles); a set's pitch range spans pi. 0 = off.
    pitch: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class PseudoLabels:
    """labels (N,) in [0, S); fine (N,) k-means cluster; selection: how S was chosen."""

    labels: np.ndarray
    fine: np.ndarray
    num_speakers: int
    selection: dict = field(default_factory=dict)


def default_clusters(n: int) -> int:
    return max(2, n // 20)


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _grid(lo: int, hi: int, n: int) -> list[int]:
    return sorted({int(round(v)) for v in np.geomspace(lo, hi, num=max(n, 2))})


def _silhouette_cut(z, fine, x, cfg: PseudoLabelConfig, k: int) -> tuple[np.ndarray, dict]:
    hi = min(cfg.max_speakers or k // 2, k)
    lo = max(cfg.min_speakers, 2)
    if hi < lo:
        raise SSPSError(f"pseudo-label: max_speakers={hi} is below min_speakers={lo} (K={k} clusters)")
    rng = np.random.default_rng(cfg.seed)
    rows = rng.choice(len(x), min(cfg.silhouette_rows, len(x)), replace=False)
    dist = np.clip(1.0 - x[rows] @ x[rows].T, 0.0, 2.0)  # (R, R) cosine distances, computed once
    np.fill_diagonal(dist, 0.0)
    tried, scores = [], []
    for s in _grid(lo, hi, cfg.candidates):
        cut = fcluster(z, s, criterion="maxclust") - 1
        sub = cut[fine[rows]]
        if len(np.unique(sub)) < 2 or len(np.unique(sub)) >= len(rows):
            continue
        tried.append(int(len(np.unique(cut))))
        scores.append(float(silhouette_score(dist, sub, metric="precomputed")))
    if not scores:
        raise SSPSError(f"pseudo-label: no cut between {lo} and {hi} speakers gives 2 groups to compare")
    best = int(np.argmax(scores))
    cut = fcluster(z, tried[best], criterion="maxclust") - 1
    return cut, {"candidates": tried, "silhouette": scores, "rows": len(rows)}


def merge_centroids(centroids: np.ndarray, fine: np.ndarray, x: np.ndarray, cfg: PseudoLabelConfig):
    """Average-linkage (cosine) dendrogram of the (K, D) centroids, cut by ``cfg.criterion``.

    Returns:
        (K,) pseudo-speaker of each centroid, and a dict describing the choice.
    """
    k = len(centroids)
    z = linkage(centroids.astype(np.float64), method="average", metric="cosine")
    if cfg.criterion == "count":
        if not 1 <= cfg.speakers <= k:
            raise SSPSError(f"pseudo-label: criterion=count needs 1 <= speakers <= K={k}, got {cfg.speakers}")
        return fcluster(z, cfg.speakers, criterion="maxclust") - 1, {}
    if cfg.criterion == "threshold":
        return fcluster(z, cfg.threshold, criterion="distance") - 1, {"threshold": cfg.threshold}
    if cfg.criterion == "silhouette":
        return _silhouette_cut(z, fine, x, cfg, k)
    raise SSPSError(f"pseudo-label: criterion {cfg.criterion!r}: expected one of {', '.join(CRITERIA)}")


def pseudo_labels(embeddings: np.ndarray, cfg: PseudoLabelConfig, device: str = "cpu") -> PseudoLabels:
    """Cluster (N, D) embeddings into pseudo-speakers (see the module docstring).

    Args:
        embeddings: (N, D) raw embeddings (normalised here).
        cfg: clustering settings.
        device: where the k-means stage runs (the merge runs on the CPU).

    Returns:
        PseudoLabels with labels (N,) numbered 0..S-1 by decreasing size.
    """
    x = normalise(embeddings)
    n = len(x)
    k = cfg.clusters or default_clusters(n)
    if n < 2:
        raise SSPSError(f"pseudo-label: need at least 2 utterances to cluster, got {n}")
    if not 2 <= k <= n:
        raise SSPSError(f"pseudo-label: clusters={k} must be between 2 and the {n} utterances to cluster")
    km = spherical_kmeans(
        torch.from_numpy(x), k, cfg.iterations, cfg.seed, device=device, backend=cfg.backend
    )
    fine = km.assignments.cpu().numpy()
    used, fine = np.unique(fine, return_inverse=True)  # drop clusters k-means left empty
    if len(used) < 2:
        raise SSPSError(
            f"pseudo-label: the clustering is empty: all {n} embeddings fell into one cluster "
            f"(identical embeddings: a collapsed or untrained model?)"
        )
    centroids = normalise(km.centroids.cpu().numpy()[used])
    coarse, selection = merge_centroids(centroids, fine, x, cfg)
    labels = coarse[fine]
    # Renumber by decreasing size: pseudo-speaker 0 is the largest.
    sizes = np.bincount(labels)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = rank[labels]
    num = int(len(np.unique(labels)))
    selection = {
        "criterion": cfg.criterion,
        "clusters": int(k),
        "non_empty_clusters": int(len(used)),
        **selection,
    }
    return PseudoLabels(labels=labels, fine=fine, num_speakers=num, selection=selection)
