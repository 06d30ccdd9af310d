"""One-call speaker verification from a checkpoint: embed two recordings and compare them.

Example::

    v = ssps.Verifier.from_checkpoint("runs/simclr/checkpoint.pt")
    v.score("alice_1.wav", "alice_2.wav")  # cosine in [-1, 1]
    v.verify("alice_1.wav", "bob.wav", threshold=0.5)  # True = same speaker
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ssps.audio.io import load_audio
from ssps.config import Config
from ssps.errors import SSPSError


class Verifier:
    """Wraps an :class:`ssps.embedder.Embedder` in eval mode.

    Args:
        embedder: waveform (B, N) -> (B, D) model.
        cfg: the config it was trained with (its sample rate is the input rate).
        device: where the model runs.
    """

    def __init__(self, embedder: nn.Module, cfg: Config, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.embedder = embedder.to(self.device).eval()
        self.cfg = cfg
        self.sample_rate = cfg.features.sample_rate

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Verifier:
        """Load any ssps checkpoint (SSPSError if it is missing, corrupt or not an ssps checkpoint)."""
        from ssps.checkpoint import load_embedder

        embedder, cfg = load_embedder(path, device=device)
        return cls(embedder, cfg, device)

    @torch.inference_mode()
    def embed(self, audio: np.ndarray | str | Path) -> np.ndarray:
        """Embed one whole utterance.

        Args:
            audio: a path to an audio file (resampled as needed), or (N,) float samples already at
                ``self.sample_rate`` (16 kHz by default).

        Returns:
            (D,) float32 raw embedding (not normalised).
        """
        if isinstance(audio, str | Path):
            wav = load_audio(audio, sample_rate=self.sample_rate)
        else:
            wav = np.asarray(audio, dtype=np.float32)
            if wav.ndim != 1 or wav.size == 0:
                raise SSPSError(f"expected (N,) mono samples at {self.sample_rate} Hz, got shape {wav.shape}")
        if wav.size <= self.embedder.features.n_fft // 2:
            raise SSPSError(f"utterance of {wav.size} samples is too short to embed")
        x = torch.from_numpy(np.ascontiguousarray(wav)).to(self.device)[None]  # (1, N)
        return self.embedder(x)[0].float().cpu().numpy()

    def score(self, a: np.ndarray | str | Path, b: np.ndarray | str | Path) -> float:
        """Cosine similarity of the two embeddings, in [-1, 1] (higher = more likely the same speaker).

        This is the raw, uncalibrated score that ``ssps score`` writes; a threshold is model-specific
        (``threshold_eer`` in the results of ``ssps eval`` is a starting point).
        """
        ea, eb = self.embed(a).astype(np.float64), self.embed(b).astype(np.float64)
        denom = max(np.linalg.norm(ea) * np.linalg.norm(eb), 1e-12)
        return float(np.dot(ea, eb) / denom)

    def verify(self, a: np.ndarray | str | Path, b: np.ndarray | str | Path, threshold: float) -> bool:
        """True (accept: same speaker) when ``score(a, b) >= threshold``."""
        return self.score(a, b) >= threshold
