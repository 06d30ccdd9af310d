"""Fundamental frequency (F0) of speech by YIN (de Cheveigné & Kawahara, 2002), vectorised over frames.

Used as a label-free speaker cue beside the embedding (``ssps pseudo-label --pitch``): an utterance's median
F0 over its voiced frames barely moves with the room, the noise or a phone codec, while speakers differ in
it. Per frame: the difference function d(tau) of the frame against itself shifted by tau, normalised by its
cumulative mean (d'(0) = 1); the period is the first local minimum of d' below ``threshold`` between
``sample_rate / fmax`` and ``sample_rate / fmin``, refined by a parabola through its neighbours. A frame with
no such minimum is unvoiced.

>>> t = np.arange(16000) / 16000
>>> tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
>>> round(float(2 ** median_log2_f0(tone, 16000)))
140
>>> bool(np.isnan(median_log2_f0(np.random.default_rng(0).standard_normal(16000), 16000)))
True
"""

from __future__ import annotations

import numpy as np

FRAME_SECONDS = 0.064  # analysis frame: the integration window plus the longest lag
HOP_SECONDS = 0.01
MIN_VOICED = 5  # fewer voiced frames than this: no F0 for the utterance


def yin(
    signal: np.ndarray,
    sample_rate: int,
    fmin: float = 60.0,
    fmax: float = 400.0,
    threshold: float = 0.3,
) -> np.ndarray:
    """(F,) F0 in Hz per 10 ms frame of a mono ``signal``; NaN where the frame is unvoiced."""
    x = np.asarray(signal, dtype=np.float64)
    length = int(round(FRAME_SECONDS * sample_rate))
    hop = int(round(HOP_SECONDS * sample_rate))
    tau_min, tau_max = int(sample_rate // fmax), int(np.ceil(sample_rate / fmin))
    window = length - tau_max - 1  # lags up to tau_max + 1 (the parabola) stay inside the frame
    if window < tau_max or not 0 < fmin < fmax < sample_rate / 2:
        raise ValueError(
            f"yin: fmin={fmin}, fmax={fmax} do not fit a {FRAME_SECONDS} s frame at {sample_rate} Hz"
        )
    if len(x) < length:
        return np.full(0, np.nan)
    frames = np.lib.stride_tricks.sliding_window_view(x, length)[::hop]
    n = 1 << int(np.ceil(np.log2(2 * length)))
    # acf[f, tau] = sum_j head[j] frame[j + tau], j < window: the cross term of the difference function
    spectrum = np.fft.rfft(frames, n) * np.conj(np.fft.rfft(frames[:, :window], n))
    acf = np.fft.irfft(spectrum, n)[:, : tau_max + 2]
    power = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    lags = np.arange(tau_max + 2)
    energy = power[:, lags + window] - power[:, lags]  # sum of frame[j + tau]^2 over the window
    diff = np.maximum(energy[:, :1] + energy - 2 * acf, 0.0)
    cumulative = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(cumulative, 1e-12)
    inner = cmnd[:, 1:-1]
    dips = (inner < cmnd[:, :-2]) & (inner <= cmnd[:, 2:]) & (inner < threshold)
    dips[:, : tau_min - 1] = False
    dips[:, tau_max:] = False
    voiced = dips.any(axis=1)
    tau = dips.argmax(axis=1) + 1  # the first qualifying dip
    rows = np.arange(len(frames))
    left, mid, right = (cmnd[rows, tau + k] for k in (-1, 0, 1))
    curve = left - 2 * mid + right
    shift = np.where(curve > 0, 0.5 * (left - right) / np.where(curve > 0, curve, 1.0), 0.0)
    f0 = sample_rate / (tau + np.clip(shift, -1, 1))
    return np.where(voiced, f0, np.nan)


def median_log2_f0(signal: np.ndarray, sample_rate: int, **kwargs) -> float:
    """Median log2 F0 (octaves above 1 Hz) over the voiced frames; NaN with fewer than 5 of them."""
    f0 = yin(signal, sample_rate, **kwargs)
    f0 = f0[~np.isnan(f0)]
    return float(np.median(np.log2(f0))) if len(f0) >= MIN_VOICED else float("nan")
