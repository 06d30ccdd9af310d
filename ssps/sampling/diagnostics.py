"""SSPS monitoring from whatever labels the manifest has (vectorised; label-free figures always present).

Labels are (N,) long arrays indexed by dataset index, -1 = unknown; a figure whose labels are missing
is left out of the result instead of being reported as zero.

>>> spk = torch.tensor([0, 0, 1, 1]); ses = torch.tensor([0, 1, 2, 3])
>>> d = sampling_diagnostics(torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([True, True]), spk, ses)
>>> d["coverage"], d["speaker_accuracy"], d["same_session_rate"]
(1.0, 0.5, 0.0)
>>> cluster_diagnostics(torch.tensor([0, 0, 1, 1]), spk, ses)["purity"]
1.0
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def _rate(hit: torch.Tensor, known: torch.Tensor) -> float | None:
    return float(hit[known].float().mean()) if bool(known.any()) else None


def sampling_diagnostics(
    anchor_idx: torch.Tensor,
    source_idx: torch.Tensor,
    found: torch.Tensor,
    speaker_ids: torch.Tensor | None = None,
    session_ids: torch.Tensor | None = None,
) -> dict[str, float]:
    """Coverage, and with labels the share of drawn positives of the anchor's speaker / session.

    Args:
        anchor_idx: (B,) anchor dataset indices.
        source_idx: (B,) dataset index of each drawn positive, -1 when none (or a centroid).
        found: (B,) bool, an SSPS positive replaced the same-utterance one.
        speaker_ids, session_ids: (N,) long, -1 unknown; None when the manifest has no such column.

    Returns:
        ``coverage``, and ``speaker_accuracy`` / ``same_session_rate`` over the drawn utterances whose
        labels (anchor's and source's) are known.
    """
    out = {"coverage": float(found.float().mean()) if found.numel() else 0.0}
    drawn = found & (source_idx >= 0)
    a, s = anchor_idx.long(), source_idx.long().clamp_min(0)
    for key, ids in (("speaker_accuracy", speaker_ids), ("same_session_rate", session_ids)):
        if ids is None:
            continue
        ids = ids.to(a.device)
        la, ls = ids[a], ids[s]
        value = _rate(la == ls, drawn & (la >= 0) & (ls >= 0))
        if value is not None:
            out[key] = value
    return out


def _purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Share of items whose cluster's majority label is their own."""
    table = contingency_matrix(labels, clusters, sparse=True).tocsc()  # (labels, clusters)
    return float(table.max(axis=0).sum() / len(labels))


def cluster_diagnostics(
    assignments: torch.Tensor, speaker_ids: torch.Tensor | None, session_ids: torch.Tensor | None
) -> dict[str, float]:
    """NMI of the clusters against speakers and against sessions, and speaker purity.

    Args:
        assignments: (N,) cluster per utterance, -1 unclustered.
        speaker_ids, session_ids: (N,) long, -1 unknown, or None.

    Returns:
        ``nmi_speaker``, ``purity`` (speaker) and ``nmi_session`` for the labels present; a session NMI near
        the speaker NMI means the clusters follow recordings as much as voices.
    """
    a = assignments.cpu().numpy()
    out: dict[str, float] = {}
    for name, ids in (("speaker", speaker_ids), ("session", session_ids)):
        if ids is None:
            continue
        lab = ids.cpu().numpy()
        keep = (a >= 0) & (lab >= 0)
        if not keep.any():
            continue
        out[f"nmi_{name}"] = float(normalized_mutual_info_score(lab[keep], a[keep]))
        if name == "speaker":
            out["purity"] = _purity(a[keep], lab[keep])
    return out
