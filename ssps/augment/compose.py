"""The training augmentation: reverberation and additive noise, combined by a strategy.

Strategies (``data.augment.strategy``): ``none``; ``both`` (reverb then noise, always: SimCLR in the
paper); ``uniform`` (none / reverb / noise / both with equal chances: DINO in the paper). Reverb comes
from an RIR manifest (a random file) or, without one, from a pool of simulated rooms made once at
start-up, so that a call costs one FFT convolution and never a room simulation.

>>> from ssps.config import AugmentConfig
>>> aug = Augmenter(AugmentConfig(strategy="uniform"), rir_pool_size=4)
>>> wav = np.sin(np.arange(32000) * 0.05).astype(np.float32)
>>> aug(wav, np.random.default_rng(0)).shape
(32000,)
>>> sorted({aug.choose(np.random.default_rng(s)) for s in range(50)})
[(), ('noise',), ('reverb',), ('reverb', 'noise')]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ssps.augment.noise import AnyOf
from ssps.augment.noise_files import AudioCache, FileNoise, noise_source
from ssps.augment.reverb import RIRSpectra, reverberate, simulate_rir
from ssps.config import AugmentConfig
from ssps.data.manifest import read_manifest
from ssps.errors import SSPSError

STRATEGIES: dict[str, tuple[tuple[str, ...], ...]] = {
    "none": ((),),
    "both": (("reverb", "noise"),),
    "uniform": ((), ("reverb",), ("noise",), ("reverb", "noise")),
}


def load_rir(path: Path, sample_rate: int = 16000) -> np.ndarray:
    """First channel of an impulse response file, at ``sample_rate``: (L,) float32.

    Multi-microphone RIRs are not averaged: the channels' direct paths arrive at different times.
    """
    try:
        rir, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise SSPSError(f"{path}: cannot read the impulse response ({e})") from None
    rir = rir[:, 0]
    if rate != sample_rate:
        rir = soxr.resample(rir, rate, sample_rate).astype(np.float32)
    if len(rir) == 0 or not np.any(rir):
        raise SSPSError(f"{path}: impulse response is empty or silent")
    return rir


class RIRBank:
    """Room impulse responses: files from a manifest, or ``pool_size`` simulated rooms drawn with ``seed``."""

    def __init__(
        self,
        manifest: str | Path = "",
        sample_rate: int = 16000,
        pool_size: int = 50,
        seed: int = 0,
        cache_bytes: int = 256 << 20,
    ):
        if manifest:
            m = read_manifest(manifest)
            self.paths = [m.resolve(i) for i in range(len(m))]
            self.pool: list[np.ndarray] = []
            self.cache = AudioCache(functools.partial(load_rir, sample_rate=sample_rate), cache_bytes)
        else:
            if pool_size < 1:
                raise SSPSError(f"RIR pool size must be at least 1, got {pool_size}")
            rng = np.random.default_rng(seed)
            self.paths = []
            self.pool = [simulate_rir(rng, sample_rate) for _ in range(pool_size)]

    def __len__(self) -> int:
        return len(self.paths) or len(self.pool)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A random impulse response, (L,) float32."""
        return self.get(self.draw_index(rng))

    def draw_index(self, rng: np.random.Generator) -> int:
        return int(rng.integers(len(self)))

    def get(self, i: int) -> np.ndarray:
        return self.cache(self.paths[i]) if self.paths else self.pool[i]


class Augmenter:
    """``augmenter(wav, rng) -> wav``: the configured strategy applied to one crop.

    Args:
        cfg: strategy, noise and RIR manifests, SNR ranges.
        sample_rate: Hz of the crops (and of loaded noises and RIRs).
        train_paths: training audio for babble when there is no noise manifest (none: coloured noise only).
        rir_pool_size: simulated rooms made at start-up when there is no RIR manifest.
        seed: seed of the simulated rooms (the per-call randomness comes from ``rng``).
        cache_bytes: bound of each in-memory cache of decoded noise / RIR files (per process).
        train_audio: the training audio in RAM (``get(path)``: ssps.data.audio_store), for babble.
    """

    def __init__(
        self,
        cfg: AugmentConfig,
        sample_rate: int = 16000,
        train_paths: Sequence[str | Path] = (),
        rir_pool_size: int = 50,
        seed: int = 0,
        cache_bytes: int = 256 << 20,
        train_audio=None,
    ):
        if cfg.strategy not in STRATEGIES:
            raise SSPSError(
                f"data.augment.strategy: unknown {cfg.strategy!r}; valid: {', '.join(STRATEGIES)}"
            )
        self.choices = STRATEGIES[cfg.strategy]
        used = {op for ops in self.choices for op in ops}
        self.noise = noise_source(cfg, sample_rate, train_paths, cache_bytes) if "noise" in used else None
        self.rirs = (
            RIRBank(cfg.rir_manifest, sample_rate, rir_pool_size, seed, cache_bytes)
            if "reverb" in used
            else None
        )
        # The simulated rooms' spectra are computed once per crop length (the same result as fftconvolve).
        self.spectra = RIRSpectra() if self.rirs is not None and self.rirs.pool else None
        if train_audio is not None:
            _babble_from(self.noise, train_audio)

    def choose(self, rng: np.random.Generator) -> tuple[str, ...]:
        """The operations for one call, e.g. ``("reverb", "noise")``."""
        return (
            self.choices[int(rng.integers(len(self.choices)))] if len(self.choices) > 1 else self.choices[0]
        )

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N,) -> (N,) float32; ``none`` returns the input unchanged."""
        for op in self.choose(rng):
            if op == "reverb":
                i = self.rirs.draw_index(rng)
                wav = (
                    self.spectra(wav, self.rirs.get(i), i)
                    if self.spectra
                    else reverberate(wav, self.rirs.get(i))
                )
            else:
                wav = self.noise(wav, rng)
        return wav


class _StoreFirst:
    """Babble's cache: training files from the shared in-RAM store, anything else from ``fallback``."""

    def __init__(self, store, fallback: AudioCache):
        self.store, self.fallback = store, fallback

    def get(self, path):
        wav = self.store.get(path)
        return self.fallback.get(path) if wav is None else wav

    def clip(self, path):
        """The stored file as a clip, so a talker converts only its excerpt (None: not in the store)."""
        return self.store.clip_of(path)

    def __call__(self, path):
        wav = self.store.get(path)
        return self.fallback(path) if wav is None else wav


def _babble_from(noise, store) -> None:
    """Point every babble source at the store: a talker costs a slice instead of a file read (the draw and
    the samples are the same: FileNoise crops a cached file exactly as it reads one from disk)."""
    sources = noise.sources if isinstance(noise, AnyOf) else [noise]
    for source in sources:
        if isinstance(source, FileNoise) and source.kinds == ["babble"]:
            source.cache = _StoreFirst(store, source.cache)
