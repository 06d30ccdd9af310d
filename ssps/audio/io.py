"""Audio files in and out: load (mono, resampled), header info, crops, atomic save.

>>> import numpy as np
>>> fixed_crop(np.arange(5, dtype=np.float32), 7).tolist()
[0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0]
>>> fixed_crop(np.arange(10, dtype=np.float32), 4).tolist()
[3.0, 4.0, 5.0, 6.0]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ssps.errors import SSPSError
from ssps.utils.files import atomic_path

_SAVE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


def _one_line(error: Exception) -> str:
    """libsndfile messages repeat the path and may span lines; keep the reason, on one line."""
    text = getattr(error, "error_string", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _open_error(path: Path, error: Exception) -> SSPSError:
    if not path.exists():
        return SSPSError(f"{path}: audio file not found")
    return SSPSError(f"{path}: cannot read audio ({_one_line(error)})")


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """Read the header only.

    Returns:
        (num_frames, sample_rate, channels) of the file as stored.
    """
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise _open_error(path, e) from None
    return int(info.frames), int(info.samplerate), int(info.channels)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds, from the header."""
    frames, rate, _ = audio_info(path)
    return frames / rate


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read a wav/flac/ogg file as mono float32 at ``sample_rate``.

    Channels are averaged; a file at another rate is resampled with soxr (HQ).

    Returns:
        (N,) float32 samples in [-1, 1].

    Raises:
        SSPSError: the file is missing, unreadable, empty or digital silence.
    """
    path = Path(path)
    try:
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise _open_error(path, e) from None
    if wav.shape[0] == 0:
        raise SSPSError(f"{path}: audio file has 0 samples")
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if not np.any(wav):
        raise SSPSError(f"{path}: audio is all zeros (digital silence)")
    if rate != sample_rate:
        wav = soxr.resample(wav, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


def _wrap_pad(wav: np.ndarray, num_samples: int) -> np.ndarray:
    # mode='wrap' repeats the signal as many times as needed, so a 0.5 s clip still fills a 4 s crop.
    return np.pad(wav, (0, num_samples - len(wav)), mode="wrap")


def _check_crop(wav: np.ndarray, num_samples: int) -> None:
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if len(wav) == 0:
        raise ValueError("cannot crop an empty waveform")


def random_crop(wav: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A crop of exactly ``num_samples`` at a uniformly random start; shorter input is wrap-padded.

    Args:
        wav: (N,) samples.
        num_samples: crop length.
        rng: the source of randomness (explicit, so crops are reproducible).

    Returns:
        (num_samples,) samples.
    """
    _check_crop(wav, num_samples)
    if len(wav) <= num_samples:
        return _wrap_pad(wav, num_samples)
    start = int(rng.integers(0, len(wav) - num_samples + 1))
    return wav[start : start + num_samples].copy()  # a copy: in-place augmentation must not touch the source


def fixed_crop(wav: np.ndarray, num_samples: int, start: int | None = None) -> np.ndarray:
    """A crop of exactly ``num_samples`` from ``start`` (None = centred); shorter input is wrap-padded.

    Args:
        wav: (N,) samples.
        num_samples: crop length.
        start: first sample; clipped so the crop stays inside the signal.

    Returns:
        (num_samples,) samples.
    """
    _check_crop(wav, num_samples)
    if len(wav) <= num_samples:
        return _wrap_pad(wav, num_samples)
    last = len(wav) - num_samples
    start = last // 2 if start is None else min(max(int(start), 0), last)
    return wav[start : start + num_samples].copy()  # a copy: in-place augmentation must not touch the source


def save_audio(path: str | Path, wav: np.ndarray, sample_rate: int = 16000) -> None:
    """Write (N,) or (N, C) float samples as 16-bit PCM, atomically; the format follows the suffix."""
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SSPSError(f"{path}: unsupported audio suffix; expected one of {', '.join(_SAVE_FORMATS)}")
    with atomic_path(path) as tmp:
        # The temporary name has no audio suffix, so give soundfile the format explicitly.
        sf.write(str(tmp), np.asarray(wav, dtype=np.float32), sample_rate, format=fmt, subtype="PCM_16")
