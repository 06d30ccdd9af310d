"""Embedding analyses for the report: the paper's variance analysis and a 2-D projection.

>>> import numpy as np
>>> emb = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
>>> r = similarity_analysis(emb, np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3]))
>>> r["same_speaker_cross_session"] > r["different_speakers"]
True
"""

from __future__ import annotations

import numpy as np


def similarity_analysis(emb: np.ndarray, speakers: np.ndarray, sessions: np.ndarray) -> dict[str, float]:
    """Mean cosine similarity of pairs: same speaker across sessions, same speaker within a session,
    and different speakers (sessions are coded globally: a session belongs to one speaker).

    Args:
        emb: (N, D) embeddings.
        speakers: (N,) speaker codes.
        sessions: (N,) session codes, unique per (speaker, session).
    """
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    sim = x @ x.T
    same_spk = speakers[:, None] == speakers[None, :]
    same_ses = sessions[:, None] == sessions[None, :]
    upper = np.triu(np.ones_like(same_spk), k=1)
    groups = {
        "same_speaker_cross_session": same_spk & ~same_ses & upper,
        "same_session": same_spk & same_ses & upper,
        "different_speakers": ~same_spk & upper,
    }
    out = {name: float(sim[mask].mean()) if mask.any() else float("nan") for name, mask in groups.items()}
    # How much of the within-speaker similarity survives a change of session (1 = channel-invariant).
    out["cross_over_within_session"] = out["same_speaker_cross_session"] / out["same_session"]
    return out


def project_2d(emb: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) with t-SNE on cosine distances (PCA start, fixed seed: the same picture every run)."""
    from sklearn.manifold import TSNE

    x = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    perplexity = float(min(30, max(5, (len(x) - 1) // 4)))
    return TSNE(2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed).fit_transform(x)
