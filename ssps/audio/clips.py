"""Clips: an utterance's samples, readable in parts, so a 2 s crop never decodes a whole file.

A clip knows its length (``frames``) and returns float32 samples for ``[start, stop)``. Crops drawn from a
clip consume the generator exactly as :func:`ssps.audio.io.random_crop` does on the decoded array, so an
in-memory clip, a file clip and the decoded waveform give bit-identical crops (tests/test_audio_store.py).

>>> import numpy as np
>>> clip = ArrayClip(np.array([0, 16384, -32768], dtype=np.int16))
>>> clip.frames, clip.read(1, 3).tolist()
(3, [0.5, -1.0])
>>> crop_random(ArrayClip(np.arange(5, dtype=np.float32)), 7, np.random.default_rng(0)).tolist()
[0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ssps.audio.io import _open_error, fixed_crop, load_audio
from ssps.errors import SSPSError

INT16_SCALE = np.float32(1.0 / 32768.0)  # libsndfile's PCM_16 -> float factor: the result is exact


class ArrayClip:
    """A decoded waveform: (N,) float32, or int16 scaled to [-1, 1) as libsndfile does when reading."""

    def __init__(self, samples: np.ndarray):
        self.samples = samples
        self.frames = len(samples)

    def read(self, start: int, stop: int) -> np.ndarray:
        part = self.samples[start:stop]
        if part.dtype == np.int16:
            return part.astype(np.float32) * INT16_SCALE
        return np.array(part, dtype=np.float32)  # a copy: in-place augmentation must not touch the source


class FileClip:
    """A file opened once per item; ``read`` seeks and decodes only the frames asked for.

    Only for files at the training rate (resampling needs the neighbouring samples); channels are averaged
    per sample exactly as :func:`ssps.audio.io.load_audio` averages them. A read that returns fewer frames
    than the header promised (a truncated file) raises :class:`SSPSError`, as a whole decode would.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise _open_error(self.path, e) from None
        self.frames = int(self.file.frames)
        self.samplerate = int(self.file.samplerate)

    def read(self, start: int, stop: int) -> np.ndarray:
        try:
            self.file.seek(start)
            part = self.file.read(stop - start, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise _open_error(self.path, e) from None
        if len(part) != stop - start:
            raise SSPSError(f"{self.path}: read {len(part)} of {stop - start} frames at {start} (truncated?)")
        return part.mean(axis=1) if part.shape[1] > 1 else np.ascontiguousarray(part[:, 0])

    def close(self) -> None:
        self.file.close()


def open_clip(path: str | Path, sample_rate: int) -> FileClip | ArrayClip:
    """A :class:`FileClip`, or the whole file decoded and resampled when it is at another rate."""
    clip = FileClip(path)
    if clip.samplerate == sample_rate and clip.frames > 0:
        return clip
    clip.close()
    return ArrayClip(load_audio(path, sample_rate))


def _wrap(clip, num_samples: int) -> np.ndarray:
    return np.pad(clip.read(0, clip.frames), (0, num_samples - clip.frames), mode="wrap")


def crop_random(clip, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`ssps.audio.io.random_crop` on a clip: same draw, same samples, (num_samples,) float32."""
    if num_samples <= 0 or clip.frames == 0:
        raise ValueError(f"cannot cut {num_samples} samples from a clip of {clip.frames}")
    if clip.frames <= num_samples:
        return _wrap(clip, num_samples)
    start = int(rng.integers(0, clip.frames - num_samples + 1))
    return clip.read(start, start + num_samples)


def crop_centre(clip, num_samples: int) -> np.ndarray:
    """:func:`ssps.audio.io.fixed_crop` (centred) on a clip, (num_samples,) float32."""
    if clip.frames <= num_samples:
        return fixed_crop(clip.read(0, clip.frames), num_samples)
    start = (clip.frames - num_samples) // 2
    return clip.read(start, start + num_samples)
