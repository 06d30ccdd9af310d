"""How well pseudo-speakers match the true speakers (diagnostics only: never used to choose anything).

All figures come from the (speakers x clusters) contingency table, so they cost O(N) for any N:

- NMI: normalised mutual information (arithmetic mean normalisation, scikit-learn's default).
- purity: share of utterances whose cluster's majority speaker is their own (1.0 for singletons, so read
  it with the number of clusters); inverse purity: the same with the roles swapped (1.0 for one cluster).
- pairwise precision / recall / F1: over pairs of utterances, precision = same-cluster pairs that are
  same-speaker pairs; recall = same-speaker pairs that are same-cluster pairs.

>>> q = cluster_quality(np.array([0, 0, 1, 1, 1]), np.array([5, 5, 5, 7, 7]))
>>> q["purity"], q["pairwise_precision"], q["pairwise_recall"]
(0.8, 0.5, 0.5)
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from ssps.errors import SSPSError


def _pairs(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    return float((counts * (counts - 1) / 2).sum())


def cluster_quality(clusters: np.ndarray, speakers: np.ndarray) -> dict[str, float]:
    """Agreement of (N,) cluster ids with (N,) speaker ids (any hashable values; both fully known)."""
    clusters, speakers = np.asarray(clusters), np.asarray(speakers)
    if clusters.shape != speakers.shape or clusters.ndim != 1 or len(clusters) == 0:
        raise SSPSError(
            f"cluster quality: expected two equal (N,) arrays, got {clusters.shape}, {speakers.shape}"
        )
    table = contingency_matrix(speakers, clusters, sparse=True).tocsc()  # (speakers, clusters)
    n = len(clusters)
    both = _pairs(table.data)
    same_cluster = _pairs(np.asarray(table.sum(axis=0)).ravel())
    same_speaker = _pairs(np.asarray(table.sum(axis=1)).ravel())
    precision = both / same_cluster if same_cluster else 1.0
    recall = both / same_speaker if same_speaker else 1.0
    return {
        "nmi": float(normalized_mutual_info_score(speakers, clusters)),
        "purity": float(table.max(axis=0).sum() / n),
        "inverse_purity": float(table.tocsr().max(axis=1).sum() / n),
        "pairwise_precision": precision,
        "pairwise_recall": recall,
        "pairwise_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "num_clusters": int(table.shape[1]),
        "num_speakers": int(table.shape[0]),
    }
