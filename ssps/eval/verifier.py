"""One-call speaker verification from a checkpoint or an exported model: embed two recordings, compare.

Example::

    v = ssps.Verifier.from_checkpoint("runs/simclr/checkpoint.pt")  # or an ``ssps export`` file
    v.score("alice_1.wav", "alice_2.wav")  # cosine in [-1, 1]
    v.verify("alice_1.wav", "bob.wav", threshold=0.5)  # True = same speaker
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ssps.audio.io import load_audio
from ssps.errors import SSPSError


class Verifier:
    """Embeds whole utterances with a model in eval mode and scores pairs by cosine.

    Args:
        embedder: waveform (B, N) -> (B, D) model: an :class:`ssps.embedder.Embedder`, or an
            :class:`ssps.export.runtime.ExportedModel`'s ``embed_waveforms``.
        sample_rate: the model's input rate.
        min_samples: the shortest utterance the model accepts.
        device: where a torch model runs.
        backend: a label-free scoring back-end (:mod:`ssps.eval.backend`) applied before the cosine.
    """

    def __init__(
        self,
        embedder: Callable[[torch.Tensor], torch.Tensor | np.ndarray],
        sample_rate: int,
        min_samples: int,
        device: str | torch.device = "cpu",
        backend=None,
    ):
        self.backend = backend
        self.device = torch.device(device)
        if isinstance(embedder, nn.Module):
            embedder = embedder.to(self.device).eval()
        self.embedder = embedder
        self.sample_rate = sample_rate
        self.min_samples = min_samples

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", backend: str | Path | None = None
    ) -> Verifier:
        """Load any ssps checkpoint, or a model written by ``ssps export`` (``.onnx`` or TorchScript);
        ``backend``: a file from ``ssps backend`` for the same model.

        SSPSError if a file is missing, corrupt or neither. ONNX models run on the CPU.
        """
        from ssps.eval.backend import load_backend
        from ssps.export.runtime import ExportedModel, exported_format

        back = load_backend(backend) if backend else None

        if exported_format(path) is not None:
            model = ExportedModel(path, device=device)
            return cls(model.embed_waveforms, model.sample_rate, model.min_samples, device, back)
        from ssps.checkpoint import load_embedder

        embedder, cfg = load_embedder(path, device=device)
        return cls(embedder, cfg.features.sample_rate, embedder.features.n_fft // 2 + 1, device, back)

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
        if wav.size < self.min_samples:
            raise SSPSError(
                f"utterance of {wav.size} samples is too short to embed (need {self.min_samples})"
            )
        x = torch.from_numpy(np.ascontiguousarray(wav)).to(self.device)[None]  # (1, N)
        return np.asarray(torch.as_tensor(self.embedder(x))[0].float().cpu())

    def score(self, a: np.ndarray | str | Path, b: np.ndarray | str | Path) -> float:
        """Cosine similarity of the two embeddings, in [-1, 1] (higher = more likely the same speaker).

        This is the raw, uncalibrated score that ``ssps score`` writes; a threshold is model-specific
        (``threshold_eer`` in the results of ``ssps eval`` is a starting point).
        """
        ea, eb = self.embed(a).astype(np.float64), self.embed(b).astype(np.float64)
        if self.backend is not None:
            ea, eb = self.backend.apply(np.stack([ea, eb])).astype(np.float64)
        denom = max(np.linalg.norm(ea) * np.linalg.norm(eb), 1e-12)
        return float(np.dot(ea, eb) / denom)

    def verify(self, a: np.ndarray | str | Path, b: np.ndarray | str | Path, threshold: float) -> bool:
        """True (accept: same speaker) when ``score(a, b) >= threshold``."""
        return self.score(a, b) >= threshold
