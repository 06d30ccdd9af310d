"""A label-free prosodic cue for the clustering: each utterance's median F0, mixed into its embedding.

``pseudo.pitch = a`` clusters, instead of the unit embedding x, the unit vector
``[sqrt(1 - a) x, sqrt(a) p]`` where ``p = (cos t, sin t)`` and ``t`` maps the utterance's median log F0
(:func:`ssps.audio.pitch.median_log2_f0`) linearly onto [0, pi] between the set's 1st and 99th
percentiles. The cosine of two such vectors is ``(1 - a) cos(x_i, x_j) + a cos(t_i - t_j)``: the embedding's
similarity, lowered for pitches far apart. An utterance without voiced frames takes the set's median pitch.
Only the audio is read.

>>> x = np.eye(2)[[0, 0, 0]]  # three identical embeddings
>>> v = mix_pitch(x, np.array([7.0, 7.0, 8.0]), 0.5)
>>> (np.round(v @ v.T, 3) + 0).tolist()  # the third is an octave away: a cosine of (1 - a) + a cos(pi)
[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import numpy as np

from ssps.errors import SSPSError
from ssps.pseudo.cluster import normalise


def utterance_pitch(paths, sample_rate: int) -> np.ndarray:
    """(N,) median log2 F0 of each file (NaN where no frame is voiced)."""
    from ssps.audio.io import load_audio
    from ssps.audio.pitch import median_log2_f0

    return np.array([median_log2_f0(load_audio(p, sample_rate), sample_rate) for p in paths])


def mix_pitch(vectors: np.ndarray, log2_f0: np.ndarray, weight: float) -> np.ndarray:
    """(N, D) embeddings and (N,) median log2 F0 -> (N, D + 2) unit vectors (see the module docstring)."""
    if not 0 <= weight < 1:
        raise SSPSError(f"pitch={weight} must be a weight in [0, 1)")
    known = ~np.isnan(log2_f0)
    if not known.any():
        raise SSPSError("pitch: no utterance has a voiced frame, so there is no pitch to mix in")
    pitch = np.where(known, log2_f0, np.median(log2_f0[known]))
    lo, hi = np.percentile(pitch, [1, 99])
    t = np.pi * np.clip((pitch - lo) / max(hi - lo, 1e-6), 0, 1)
    x = np.sqrt(1 - weight) * normalise(vectors)
    p = np.sqrt(weight) * np.stack([np.cos(t), np.sin(t)], axis=1)
    return np.concatenate([x, p], axis=1).astype(np.float32)
