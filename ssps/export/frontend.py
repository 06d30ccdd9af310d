"""An export-friendly log-mel front end: the STFT as a strided conv1d with the windowed DFT basis.

``torch.stft`` has no TorchScript-traceable, ONNX-exportable form that every runtime runs; a conv1d
does. :class:`ConvLogMel` computes what :class:`ssps.audio.features.LogMelFrontEnd` computes (same
centred reflect padding, window, Slaney mel filterbank, log floor and per-utterance mean/std
normalisation over time), so a checkpoint's front end can be replaced by it without retraining.

>>> import torch
>>> from ssps.audio.features import LogMelFrontEnd
>>> ref = LogMelFrontEnd(n_mels=40)
>>> wav = torch.randn(2, 16000)
>>> bool(torch.allclose(ConvLogMel(ref)(wav), ref(wav), atol=1e-3))
True
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssps.audio.features import LOG_FLOOR, STD_FLOOR, LogMelFrontEnd


def dft_basis(window: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Windowed one-sided DFT basis: (2 * (n_fft // 2 + 1), 1, win_length) conv1d weights.

    Rows ``k`` are ``w[n] cos(2 pi k (n + offset) / n_fft)``, rows ``F + k`` the matching sines, where
    ``offset`` centres the window in the n_fft frame as ``torch.stft`` does. Only the window's nonzero
    span is kept, so the conv costs win_length taps, not n_fft.
    """
    win_length = window.numel()
    offset = (n_fft - win_length) // 2
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]  # (F, 1)
    n = torch.arange(win_length, dtype=torch.float64)[None] + offset  # (1, win_length)
    angle = 2 * math.pi * k * n / n_fft
    w = window.double()[None]
    # The sign of the imaginary part does not matter: only the power is used.
    basis = torch.cat([w * torch.cos(angle), w * torch.sin(angle)])  # (2F, win_length)
    return basis.float().unsqueeze(1)


class ConvLogMel(nn.Module):
    """Waveform (B, N) -> instance-normalised log-mel features (B, T, n_mels), T = 1 + N // hop.

    Args:
        reference: the front end to reproduce; its settings and mel filterbank are copied.
    """

    def __init__(self, reference: LogMelFrontEnd):
        super().__init__()
        self.sample_rate = reference.sample_rate
        self.n_fft = reference.n_fft
        self.hop_length = reference.hop_length
        self.n_mels = reference.n_mels
        # Frame t covers [t * hop, t * hop + n_fft) of the padded signal, but its window is nonzero only
        # on [t * hop + left, t * hop + left + win_length): the conv runs on that span alone.
        self.left = (reference.n_fft - reference.win_length) // 2
        self.right = reference.n_fft - reference.win_length - self.left
        self.register_buffer("basis", dft_basis(reference.window.cpu(), reference.n_fft))
        self.register_buffer("mel_matrix", reference.mel_matrix.detach().cpu().clone())  # (n_mels, F)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) float32 waveforms, N > n_fft // 2 -> (B, T, n_mels) features."""
        pad = self.n_fft // 2
        x = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect")  # (B, 1, N + n_fft)
        # Dropping `left` samples in front and `right` at the end leaves N + win_length samples, so the
        # strided conv yields exactly 1 + N // hop frames, as the centred STFT does.
        x = x[:, :, self.left : x.shape[-1] - self.right]
        spec = F.conv1d(x, self.basis, stride=self.hop_length)  # (B, 2F, T)
        real, imag = spec.chunk(2, dim=1)  # (B, F, T) each
        power = real.square() + imag.square()
        logmel = torch.log(torch.matmul(self.mel_matrix, power) + LOG_FLOOR)  # (B, n_mels, T)
        mean = logmel.mean(dim=-1, keepdim=True)
        std = (logmel - mean).square().mean(dim=-1, keepdim=True).sqrt()  # population std
        return ((logmel - mean) / (std + STD_FLOOR)).transpose(1, 2)
