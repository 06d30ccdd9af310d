"""Noise from audio files: MUSAN categories read from a manifest, babble from training speech, and the
``noise_source`` a config asks for.

Files are read in part when they are long and at the right rate, decoded whole (and cached) otherwise.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from ssps.audio.io import load_audio
from ssps.augment.noise import AnyOf, ColouredNoise, NoiseDraw, NoiseSource, fit_length, random_segment
from ssps.config import AugmentConfig
from ssps.data.manifest import read_manifest
from ssps.errors import SSPSError

# Files summed per draw. The reference adds one MUSAN file of any category (speech too: one talker).
MUSAN_COUNTS = {"speech": (1, 1), "noise": (1, 1), "music": (1, 1)}
# Babble from training speech (no MUSAN: our stand-in for its speech category) sums 3-7 talkers.
BABBLE_TALKERS = (3, 7)


def read_segment(
    path: Path, num_samples: int, rng: np.random.Generator, sample_rate: int
) -> np.ndarray | None:
    """A random ``num_samples`` excerpt read straight from disk, or None when the file needs decoding whole.

    Reading only the excerpt costs ~0.2 ms where decoding a minute of MUSAN music costs ~3 ms, and a
    whole MUSAN (~100 h) does not fit a memory cache. The offset is drawn exactly as ``random_segment``
    draws it, so the result does not depend on what happens to be cached.
    """
    try:
        with sf.SoundFile(str(path)) as f:
            if f.samplerate != sample_rate or f.frames <= num_samples:
                return None
            f.seek(int(rng.integers(0, f.frames - num_samples + 1)))
            wav = f.read(num_samples, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise SSPSError(f"{path}: cannot read noise audio ({e})") from None
    return wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]


class AudioCache:
    """Decoded files kept in memory; least recently used ones go once ``max_bytes`` is exceeded.

    Each DataLoader worker holds its own copy, so the bound is per process.
    """

    def __init__(self, load: Callable[[Path], np.ndarray], max_bytes: int = 256 << 20):
        self.load, self.max_bytes = load, max_bytes
        self._items: OrderedDict[Path, np.ndarray] = OrderedDict()
        self.bytes = 0

    def get(self, path: str | Path) -> np.ndarray | None:
        """The decoded file if it is cached (marked as recently used), else None; never loads."""
        wav = self._items.get(Path(path))
        if wav is not None:
            self._items.move_to_end(Path(path))
        return wav

    def __call__(self, path: str | Path) -> np.ndarray:
        path = Path(path)
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        wav = self.load(path)
        if wav.nbytes <= self.max_bytes:
            self._items[path] = wav
            self.bytes += wav.nbytes
            while self.bytes > self.max_bytes:
                self.bytes -= self._items.popitem(last=False)[1].nbytes
        return wav


class FileNoise(NoiseSource):
    """Noise files grouped by kind (MUSAN categories); a draw picks a kind, then files of it.

    Args:
        files: kind -> audio paths.
        snr_ranges: kind -> (low, high) dB; each file gets its own uniform SNR.
        counts: kind -> (min, max) files summed per draw (default 1).
        sample_rate: Hz the files are loaded at.
        cache_bytes: bound of the in-memory cache of decoded files.
    """

    def __init__(
        self,
        files: dict[str, list[Path]],
        snr_ranges: dict[str, tuple[float, float]],
        counts: dict[str, tuple[int, int]] | None = None,
        sample_rate: int = 16000,
        cache_bytes: int = 256 << 20,
    ):
        self.files = {kind: list(paths) for kind, paths in files.items() if paths}
        if not self.files:
            raise SSPSError("noise source: no noise files")
        self.kinds = sorted(self.files)
        self.snr_ranges, self.counts = snr_ranges, counts or {}
        self.sample_rate = sample_rate
        self.cache = AudioCache(functools.partial(load_audio, sample_rate=sample_rate), cache_bytes)

    @classmethod
    def from_manifest(
        cls, path: str | Path, cfg: AugmentConfig, sample_rate: int = 16000, cache_bytes: int = 256 << 20
    ) -> FileNoise:
        """A MUSAN-style manifest (``ssps data prepare musan``): the speaker column is the category."""
        m = read_manifest(path)
        files: dict[str, list[Path]] = {}
        for i, row in enumerate(m.rows):
            if row.speaker not in MUSAN_COUNTS:
                raise SSPSError(
                    f"{path}: utterance {row.utterance!r} has category {row.speaker!r}; "
                    f"expected one of {', '.join(MUSAN_COUNTS)} in the speaker column"
                )
            files.setdefault(row.speaker, []).append(m.resolve(i))
        snr = {"speech": cfg.musan_speech_snr, "noise": cfg.musan_noise_snr, "music": cfg.musan_music_snr}
        return cls(files, snr, MUSAN_COUNTS, sample_rate, cache_bytes)

    def _segment(self, path: Path, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Cached files are cropped in memory, long ones at the right rate read in part, others cached.

        A cache that holds clips (the shared training store) converts only the excerpt: the same draws and
        the same samples as :func:`random_segment` on the whole converted file."""
        clip = self.cache.clip(path) if hasattr(self.cache, "clip") else None
        if clip is not None and clip.frames > 0:
            span = clip.frames - num_samples
            start = int(rng.integers(0, span + 1) if span >= 0 else rng.integers(0, clip.frames))
            if start + num_samples <= clip.frames:
                return clip.read(start, start + num_samples)
            return fit_length(clip.read(0, clip.frames), num_samples, start)
        cached = self.cache.get(path)
        if cached is None:
            part = read_segment(path, num_samples, rng, self.sample_rate)
            if part is not None:
                return part
            cached = self.cache(path)
        return random_segment(cached, num_samples, rng)

    def draw(self, num_samples: int, rng: np.random.Generator) -> list[NoiseDraw]:
        kind = self.kinds[rng.integers(len(self.kinds))]
        paths = self.files[kind]
        low, high = self.counts.get(kind, (1, 1))
        k = int(rng.integers(low, high + 1))
        chosen = rng.choice(len(paths), size=k, replace=k > len(paths))
        return [
            NoiseDraw(
                self._segment(paths[i], num_samples, rng),
                float(rng.uniform(*self.snr_ranges[kind])),
                kind,
            )
            for i in chosen
        ]


def babble(
    paths: Sequence[str | Path],
    snr_range: tuple[float, float] = (13.0, 20.0),
    talkers: tuple[int, int] = BABBLE_TALKERS,
    sample_rate: int = 16000,
    cache_bytes: int = 256 << 20,
) -> FileNoise:
    """Babble from training speech: ``talkers`` random utterances summed, each at its own SNR."""
    return FileNoise(
        {"babble": [Path(p) for p in paths]},
        {"babble": snr_range},
        {"babble": talkers},
        sample_rate,
        cache_bytes,
    )


def noise_source(
    cfg: AugmentConfig,
    sample_rate: int = 16000,
    train_paths: Sequence[str | Path] = (),
    cache_bytes: int = 256 << 20,
) -> NoiseSource:
    """MUSAN from ``cfg.noise_manifest``; without it, coloured noise (and babble if ``train_paths`` given)."""
    if cfg.noise_manifest:
        return FileNoise.from_manifest(cfg.noise_manifest, cfg, sample_rate, cache_bytes)
    coloured = ColouredNoise(cfg.musan_noise_snr, sample_rate=sample_rate)
    if not train_paths:
        return coloured
    return AnyOf(
        [
            coloured,
            babble(train_paths, cfg.musan_speech_snr, BABBLE_TALKERS, sample_rate, cache_bytes),
        ]
    )
