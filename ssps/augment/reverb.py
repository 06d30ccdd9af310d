"""Simulated rooms: image-source room impulse responses and reverberation.

A room is a shoebox (pyroomacoustics image-source model). Wall absorption comes from the RT60 through
Sabine's formula; the reflection order is capped so that one RIR takes a few tens of milliseconds, which
truncates the far tail of very reverberant rooms (the early part, which colours the voice, is exact).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> rir = simulate_rir(rng, rt60=0.4, room_dims=(5.0, 4.0, 3.0), distance=1.5)
>>> rir.dtype, rir.ndim, int(np.argmax(np.abs(rir))) < 400
(dtype('float32'), 1, True)
>>> wav = rng.standard_normal(16000).astype(np.float32)
>>> reverberate(wav, rir).shape
(16000,)
"""

from __future__ import annotations

import numpy as np
import pyroomacoustics as pra
import scipy.fft
from scipy.signal import fftconvolve

# Caps the image-source order: ~30 keeps one RIR under ~50 ms on one core and still covers ~0.5 s of tail
# in a living-room-sized shoebox.
MAX_ORDER = 30
ROOM_RANGE = ((3.0, 10.0), (3.0, 8.0), (2.4, 4.0))  # metres: length, width, height
RT60_RANGE = (0.15, 0.9)  # seconds
DISTANCE_RANGE = (0.3, 3.0)  # source-microphone, metres
WALL_MARGIN = 0.3  # keep source and microphone this far from walls (metres)


def simulate_rir(
    rng: np.random.Generator,
    sample_rate: int = 16000,
    room_dims: tuple[float, float, float] | None = None,
    rt60: float | None = None,
    distance: float | None = None,
) -> np.ndarray:
    """Draw a shoebox room and return the impulse response from a talker to a microphone in it.

    Args:
        rng: source of every unspecified parameter (and of the source/microphone positions).
        sample_rate: Hz.
        room_dims: (length, width, height) in metres; drawn from ``ROOM_RANGE`` when None.
        rt60: reverberation time in seconds; drawn from ``RT60_RANGE`` when None.
        distance: source-microphone distance in metres; drawn from ``DISTANCE_RANGE`` when None, and
            shortened to what fits the room.

    Returns:
        float32 (L,) impulse response, peak-normalised to 1 at the direct path.
    """
    if room_dims is None:
        room_dims = tuple(float(rng.uniform(lo, hi)) for lo, hi in ROOM_RANGE)
    dims = np.asarray(room_dims, dtype=float)
    if rt60 is None:
        rt60 = float(rng.uniform(*RT60_RANGE))
    if distance is None:
        distance = float(rng.uniform(*DISTANCE_RANGE))
    source, mic = _place(rng, dims, distance)
    try:
        absorption, order = pra.inverse_sabine(rt60, dims)
    except ValueError:
        # RT60 too short for Sabine in this room: walls fully absorbing, direct path plus a little.
        absorption, order = 0.99, 1
    room = pra.ShoeBox(
        dims, fs=sample_rate, materials=pra.Material(float(absorption)), max_order=min(int(order), MAX_ORDER)
    )
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float32)
    return rir / np.max(np.abs(rir))


def _place(rng: np.random.Generator, dims: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """A talker at a random spot and a microphone ``distance`` away in a random horizontal direction."""
    lo, hi = np.full(3, WALL_MARGIN), dims - WALL_MARGIN
    hi[2] = min(hi[2], 2.0)  # talker and microphone at sitting/standing height
    lo[2] = min(1.0, hi[2])
    source = rng.uniform(lo, hi)
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle), rng.uniform(-0.1, 0.1)])
    direction /= np.linalg.norm(direction)
    # Largest step along the direction that keeps the microphone inside the margins.
    with np.errstate(divide="ignore", invalid="ignore"):
        limits = np.where(direction > 0, (hi - source) / direction, (lo - source) / direction)
    reach = float(np.min(limits[np.isfinite(limits) & (limits >= 0)], initial=distance))
    mic = source + direction * min(distance, max(reach, 0.05))
    return source, np.clip(mic, lo, hi)


def reverberate(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a room impulse response.

    Args:
        wav: (T,) waveform.
        rir: (L,) impulse response.

    Returns:
        (T,) float32: the reverberant signal aligned to the direct-path peak (no added delay), same length
        and same RMS level as the input.
    """
    wav = np.asarray(wav, dtype=np.float32)
    rir = np.asarray(rir, dtype=np.float32)
    peak = int(np.argmax(np.abs(rir)))
    out = fftconvolve(wav, rir)[peak : peak + len(wav)].astype(np.float32)
    rms_in, rms_out = _rms(wav), _rms(out)
    if rms_out > 0:
        out *= rms_in / rms_out
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


class RIRSpectra:
    """:func:`reverberate` with each impulse response's spectrum kept per FFT size (simulated rooms are few).

    ``spectra(wav, rir, key)`` equals ``reverberate(wav, rir)`` bit for bit: the same FFT size, the same
    pocketfft transforms as ``fftconvolve``, one forward transform fewer per call.
    """

    def __init__(self):
        self._spectra: dict[tuple[int, int], tuple[np.ndarray, int]] = {}

    def __call__(self, wav: np.ndarray, rir: np.ndarray, key: int) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        full = len(wav) + len(rir) - 1
        nfft = scipy.fft.next_fast_len(full, True)
        cached = self._spectra.get((key, nfft))
        if cached is None:
            rir = np.asarray(rir, dtype=np.float32)
            cached = (scipy.fft.rfftn(rir, [nfft], axes=[0]), int(np.argmax(np.abs(rir))))
            self._spectra[(key, nfft)] = cached
        spectrum, peak = cached
        conv = scipy.fft.irfftn(scipy.fft.rfftn(wav, [nfft], axes=[0]) * spectrum, [nfft], axes=[0])
        out = conv[:full][peak : peak + len(wav)].astype(np.float32)
        rms_in, rms_out = _rms(wav), _rms(out)
        if rms_out > 0:
            out *= rms_in / rms_out
        return out
