"""Additive noise at a chosen SNR: the mixing primitives and coloured noise (files: :mod:`noise_files`).

A source is a callable ``source(wav, rng) -> wav``; its ``draw(num_samples, rng)`` returns the noise
signals and the SNR each is added at, so the SNR ranges can be checked without re-measuring. SNRs use
active power (pauses excluded), so a sentence with long silences is not judged quieter than it sounds.

>>> rng = np.random.default_rng(0)
>>> wav = np.sin(np.arange(16000) * 0.1).astype(np.float32)
>>> noisy = add_noise(wav, rng.standard_normal(5000), snr_db=10.0)
>>> noisy.shape, round(float(10 * np.log10(active_power(wav) / active_power(noisy - wav))), 2)
((16000,), 10.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ssps.errors import SSPSError

FRAME = 320  # 20 ms at 16 kHz: the frames of the active-power estimate
ACTIVE_DB = 40.0  # frames this far below the loudest frame count as pauses
COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f^exponent


class NoiseDraw(NamedTuple):
    noise: np.ndarray  # (N,) float32, already cropped or looped to the signal's length
    snr_db: float
    kind: str  # MUSAN category, colour or "babble"


def active_power(wav: np.ndarray) -> float:
    """Mean power of the frames within ``ACTIVE_DB`` of the loudest 20 ms frame.

    Args:
        wav: (N,) samples.
    """
    x = np.asarray(wav, dtype=np.float64)
    n = len(x) // FRAME
    if n == 0:
        return float(np.mean(x**2)) if len(x) else 0.0
    power = np.mean(x[: n * FRAME].reshape(n, FRAME) ** 2, axis=1)
    peak = power.max()
    return float(power[power >= peak * 10 ** (-ACTIVE_DB / 10)].mean()) if peak > 0 else 0.0


def fit_length(noise: np.ndarray, num_samples: int, start: int = 0) -> np.ndarray:
    """(L,) -> (num_samples,): crop from ``start``, looping around the end as often as needed."""
    noise = np.asarray(noise, dtype=np.float32)
    if len(noise) == 0:
        raise ValueError("empty noise signal")
    start %= len(noise)
    if start + num_samples <= len(noise):
        return noise[start : start + num_samples]
    return np.take(noise, np.arange(start, start + num_samples), mode="wrap")


def random_segment(noise: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A ``num_samples`` excerpt at a random offset (looped when the noise is shorter)."""
    span = len(noise) - num_samples
    start = rng.integers(0, span + 1) if span >= 0 else rng.integers(0, len(noise))
    return fit_length(noise, num_samples, int(start))


def scale_noise(
    wav: np.ndarray, noise: np.ndarray, snr_db: float, p_signal: float | None = None
) -> np.ndarray:
    """Noise fitted to ``len(wav)``, scaled so active powers give ``snr_db``; zeros if either is silent.

    ``p_signal``: ``active_power(wav)`` when the caller already has it.
    """
    noise = fit_length(noise, len(wav))
    p_signal = active_power(wav) if p_signal is None else p_signal
    p_noise = active_power(noise)
    if p_signal == 0 or p_noise == 0:
        return np.zeros(len(wav), dtype=np.float32)
    return noise * np.float32(np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10))))


def add_noise(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` (looped or cropped to length) at ``snr_db`` dB.

    Args:
        wav: (N,) clean signal.
        noise: (L,) noise, any length.
        snr_db: target signal-to-noise ratio of active powers.

    Returns:
        (N,) float32.
    """
    return (np.asarray(wav, dtype=np.float32) + scale_noise(wav, noise, snr_db)).astype(np.float32)


def mix(wav: np.ndarray, draws: Sequence[NoiseDraw]) -> np.ndarray:
    """Add every draw at its own SNR (several babble talkers each at theirs, as in the reference)."""
    out = np.asarray(wav, dtype=np.float32).copy()
    p_signal = active_power(wav)
    for d in draws:
        out += scale_noise(wav, d.noise, d.snr_db, p_signal)
    return out


def coloured_noise(colour: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise shaped in the frequency domain to a 1/f^k power spectrum; (N,) float32, unit power."""
    if colour not in COLOURS:
        raise SSPSError(f"noise colour {colour!r}: expected one of {', '.join(COLOURS)}")
    bins = num_samples // 2 + 1
    spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
    f = np.arange(bins, dtype=np.float64)
    f[0] = 1.0
    gain = f ** (-COLOURS[colour] / 2)  # amplitude ~ f^(-k/2) gives power ~ f^-k
    gain[0] = 0.0  # no DC offset
    x = np.fft.irfft(spectrum * gain, n=num_samples)
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


class NoiseSource:
    """A noise source: ``draw`` picks the noises; calling it adds them to a signal."""

    def draw(self, num_samples: int, rng: np.random.Generator) -> list[NoiseDraw]:
        raise NotImplementedError

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N,) -> (N,) float32 noisy signal."""
        return mix(wav, self.draw(len(wav), rng))


class ColouredNoise(NoiseSource):
    """White, pink or brown noise (uniformly), at an SNR drawn uniformly from ``snr_range``.

    Each colour is made once (``seconds`` long, from ``seed``) and a draw takes a random excerpt: a
    crop costs a slice instead of an FFT, and the inverse FFT's output is periodic, so excerpts that
    wrap around the end have no seam.
    """

    def __init__(
        self,
        snr_range: tuple[float, float] = (0.0, 15.0),
        colours: Sequence[str] = tuple(COLOURS),
        seconds: float = 30.0,
        sample_rate: int = 16000,
        seed: int = 0,
    ):
        self.snr_range, self.colours = snr_range, tuple(colours)
        rng = np.random.default_rng(seed)
        self.bank = {c: coloured_noise(c, int(seconds * sample_rate), rng) for c in self.colours}

    def draw(self, num_samples: int, rng: np.random.Generator) -> list[NoiseDraw]:
        colour = self.colours[rng.integers(len(self.colours))]
        noise = random_segment(self.bank[colour], num_samples, rng)
        return [NoiseDraw(noise, float(rng.uniform(*self.snr_range)), colour)]


class AnyOf(NoiseSource):
    """One of several sources, chosen uniformly per draw."""

    def __init__(self, sources: Sequence[NoiseSource]):
        if not sources:
            raise ValueError("AnyOf needs at least one source")
        self.sources = list(sources)

    def draw(self, num_samples: int, rng: np.random.Generator) -> list[NoiseDraw]:
        return self.sources[rng.integers(len(self.sources))].draw(num_samples, rng)
