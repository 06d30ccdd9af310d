"""Recording channels: microphone frequency responses, phone codecs and levels.

A microphone is a cascade of biquads (second-order sections): a high-pass, a low-pass and a couple of
peaking bands, all smooth so that the response colours the voice without destroying it. Codecs go
through sox, the reference implementation of GSM 06.10 and G.711 µ-law.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> sos = microphone_response(rng, 16000)
>>> wav = rng.standard_normal(16000).astype(np.float32)
>>> apply_microphone(wav, sos).shape
(16000,)
>>> round(float(20 * np.log10(np.sqrt(np.mean(set_level(wav, -26.0) ** 2)))), 3)
-26.0
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from ssps.errors import SSPSError

CODECS = ("none", "gsm", "mulaw")
HIGHPASS_RANGE = (100.0, 300.0)  # Hz
LOWPASS_RANGE = (3400.0, 8000.0)  # Hz; at or above Nyquist means no low-pass
PEAK_FREQ_RANGE = (300.0, 4000.0)  # Hz
PEAK_GAIN_DB = 6.0
PEAK_Q_RANGE = (0.7, 2.0)
PEAK_LIMIT = 0.99  # set_level never lets a sample reach full scale


def microphone_response(
    rng: np.random.Generator,
    sample_rate: int = 16000,
    n_peaks: int = 2,
    peak_gain_db: float = PEAK_GAIN_DB,
    lowpass_range: tuple[float, float] = LOWPASS_RANGE,
) -> np.ndarray:
    """Draw a smooth, band-limited microphone/channel frequency response.

    Args:
        rng: source of the cut-offs, band frequencies and gains.
        sample_rate: Hz.
        n_peaks: number of peaking-EQ bands.
        peak_gain_db: each band's gain is drawn in ±``peak_gain_db``.
        lowpass_range: Hz range of the low-pass cut-off; a cut-off near Nyquist means no low-pass.

    Returns:
        (S, 6) float64 second-order sections for ``scipy.signal.sosfilt``.
    """
    nyquist = sample_rate / 2
    sections = [butter(2, rng.uniform(*HIGHPASS_RANGE), btype="highpass", fs=sample_rate, output="sos")]
    cutoff = rng.uniform(*lowpass_range)
    if cutoff < 0.95 * nyquist:
        sections.append(butter(4, cutoff, btype="lowpass", fs=sample_rate, output="sos"))
    for _ in range(n_peaks):
        freq = np.exp(rng.uniform(*np.log(PEAK_FREQ_RANGE)))
        gain = rng.uniform(-peak_gain_db, peak_gain_db)
        sections.append(_peaking(min(freq, 0.8 * nyquist), gain, rng.uniform(*PEAK_Q_RANGE), sample_rate))
    return np.concatenate(sections, axis=0)


def _peaking(freq: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ audio-EQ-cookbook peaking biquad as one (1, 6) section."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return np.concatenate([b / den[0], den / den[0]])[None, :]


def apply_microphone(wav: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """Filter (T,) audio through a response from :func:`microphone_response`; returns (T,) float32."""
    return sosfilt(sos, np.asarray(wav, dtype=np.float64)).astype(np.float32)


def set_level(wav: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale (T,) audio to an RMS of ``dbfs`` dB re full scale; peaks above 0.99 are scaled down instead."""
    wav = np.asarray(wav, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if len(wav) else 0.0
    if rms == 0:
        return wav.copy()
    out = wav * np.float32(10 ** (dbfs / 20) / rms)
    peak = float(np.max(np.abs(out)))
    if peak > PEAK_LIMIT:
        out *= np.float32(PEAK_LIMIT / peak)
    return out


def apply_codec(wav: np.ndarray, codec: str, sample_rate: int = 16000) -> np.ndarray:
    """Pass (T,) audio through a telephone codec at 8 kHz and back to ``sample_rate``.

    Args:
        wav: (T,) waveform in [-1, 1].
        codec: "gsm" (GSM 06.10 full rate), "mulaw" (G.711 µ-law, 8 bit) or "none".
        sample_rate: Hz of the input and of the output.

    Returns:
        (T,) float32, same length as the input.
    """
    if codec not in CODECS:
        raise SSPSError(f"codec {codec!r}: expected one of {', '.join(CODECS)}")
    wav = np.asarray(wav, dtype=np.float32)
    if codec == "none":
        return wav.copy()
    sox = shutil.which("sox")
    if sox is None:
        raise SSPSError(f"codec {codec!r} needs sox: apt-get install sox libsox-fmt-all (or make system)")
    encoded = {"gsm": ["-t", "gsm"], "mulaw": ["-t", "wav", "-e", "mu-law", "-b", "8"]}[codec]
    with tempfile.TemporaryDirectory(prefix="ssps-codec-") as tmp:
        src, mid, dst = Path(tmp, "in.wav"), Path(tmp, "mid"), Path(tmp, "out.wav")
        sf.write(src, np.clip(wav, -1.0, 1.0), sample_rate, subtype="FLOAT")
        # -D: sox dithers with random noise by default, which would make the output differ run to run.
        _sox([sox, "-q", "-D", str(src), "-r", "8000", "-c", "1", *encoded, str(mid)])
        decoded = ["-e", "floating-point", "-b", "32", "-r", str(sample_rate), str(dst)]
        _sox([sox, "-q", "-D", *encoded[:2], "-r", "8000", "-c", "1", str(mid), *decoded])
        out, _ = sf.read(dst, dtype="float32")
    # Resampling twice can change the length by a sample or two.
    return np.pad(out[: len(wav)], (0, max(0, len(wav) - len(out))))


def _sox(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SSPSError(f"sox failed ({' '.join(cmd)}): {result.stderr.strip().splitlines()[-1:]}")
