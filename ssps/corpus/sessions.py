"""One recording session of the built-in corpus: a speaker's utterances under one drawn condition.

Presets say how many sessions and utterances each speaker gets; every session's randomness is seeded from
(seed, speaker, session), so the audio does not depend on the number of workers or on the order of jobs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ssps.augment.channel import apply_codec, set_level
from ssps.corpus.conditions import apply_condition, draw_condition
from ssps.corpus.text import sentences
from ssps.corpus.voices import Identity, Voice, active_ratio, synthesize
from ssps.errors import SSPSError
from ssps.utils.files import atomic_path

SAMPLE_RATE = 16000
TEST_FRACTION = 0.25  # of base voices; a voice's siblings follow it
DEV_FRACTION = 0.15  # of base voices, for every setting and budget choice (test lists are for figures only)
MIN_ACTIVE = 0.5  # voices whose English comes out mostly silent are dropped
SCREEN_SENTENCES = 3


@dataclass(frozen=True)
class Preset:
    voices: tuple[str, ...]  # MBROLA databases; empty = every usable installed voice
    sessions: int  # per speaker
    utterances: int  # per session
    duration: tuple[float, float]  # seconds, drawn per utterance
    siblings: int  # candidate siblings per voice (each kept only if it measures apart)
    max_targets: int  # target trials per list (as many non-targets)


PRESETS = {
    "tiny": Preset(("us1", "us2", "us3", "en1", "de2", "fr1", "de1", "es1"), 2, 3, (1.0, 1.5), 0, 200),
    "default": Preset((), 4, 8, (2.0, 4.0), 1, 5000),
    "large": Preset((), 8, 16, (2.0, 5.0), 2, 20000),
    # VoxCeleb2 has ~25 recordings (videos) of ~7 utterances per speaker: many short sessions, so that a
    # speaker's recordings can form a neighbourhood in the embedding space (issue 10, hypothesis a).
    "sessions16": Preset((), 16, 2, (2.0, 4.0), 1, 20000),  # the default's audio, 4x the sessions
    "sessions16x4": Preset((), 16, 4, (2.0, 4.0), 1, 20000),
    "sessions24": Preset((), 24, 3, (2.0, 4.0), 1, 20000),
}


def rng_for(*parts: int | str) -> np.random.Generator:
    """A generator seeded from names and numbers, identical in every process."""
    return np.random.default_rng([p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts])


@dataclass(frozen=True)
class Job:
    """One (speaker, session): synthesise its utterances under the session's condition."""

    ident: Identity
    session: int
    out: str
    seed: int
    channels: str
    preset: Preset

    @property
    def session_id(self) -> str:
        return session_id(self.seed, self.ident.name, self.session)

    @property
    def names(self) -> list[str]:
        return [f"{self.ident.name}/{self.session_id}/u{k:02d}.flac" for k in range(self.preset.utterances)]


def session_id(seed: int, speaker: str, session: int) -> str:
    """An opaque, corpus-wide unique recording id, like a VoxCeleb video id.

    The manifest's session column is recording metadata on its own: nothing about the speaker can be read
    from it, and grouping by it never needs the speaker column.

    >>> session_id(0, "us1", 1), session_id(0, "us2", 1) != session_id(0, "us1", 1)
    ('red261af2', True)
    """
    return f"r{zlib.crc32(f'{seed}/{speaker}/{session}'.encode()):08x}"


def run_job(job: Job) -> dict:
    """Write the session's missing FLAC files; return its condition, utterances and their lengths."""
    rng = rng_for(job.seed, job.ident.name, job.session)
    cond = draw_condition(rng, job.channels)
    wav_dir = Path(job.out, "wav")
    paths = [wav_dir / name for name in job.names]
    if all(p.is_file() for p in paths):  # resume: the whole session exists
        return {"condition": cond, "lengths": [sf.info(p).frames for p in paths], "written": 0}
    chain = cond.build(SAMPLE_RATE)
    texts = sentences()
    clean = [_utterance(job.ident, texts, rng, job.preset.duration) for _ in paths]
    wavs = [apply_condition(w, cond, chain, rng, codec=False) for w in clean]
    if cond.codec != "none":
        # One codec pass over the whole session: two sox calls per session instead of per utterance.
        coded = set_level(apply_codec(np.concatenate(wavs), cond.codec, SAMPLE_RATE), cond.level)
        wavs = np.split(coded, np.cumsum([len(w) for w in wavs])[:-1])
    written = 0
    for path, wav in zip(paths, wavs, strict=True):
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                sf.write(tmp, np.clip(wav, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            written += 1
    return {"condition": cond, "lengths": [len(w) for w in wavs], "written": written}


def _utterance(ident: Identity, texts: list[str], rng: np.random.Generator, duration: tuple[float, float]):
    """(T,) clean speech of a drawn duration: sentences with small pitch/tempo jitter, cut to length."""
    target = int(rng.uniform(*duration) * SAMPLE_RATE)
    parts, total = [], 0
    while total < target:
        text = texts[rng.integers(len(texts))]
        wav = synthesize(
            ident, text, SAMPLE_RATE, pitch=rng.uniform(0.97, 1.03), tempo=rng.uniform(0.95, 1.05)
        )
        parts.append(wav)
        total += len(wav)
    wav = np.concatenate(parts)[:target]
    fade = min(len(wav), int(0.02 * SAMPLE_RATE))
    wav[len(wav) - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)  # no click at the cut
    return wav


def screen_voice(voice: Voice) -> dict:
    """Active-speech ratio of a voice reading English; ``error`` when it cannot speak at all."""
    try:
        ident = Identity(voice.database, voice)
        wav = np.concatenate([synthesize(ident, s, SAMPLE_RATE) for s in sentences()[:SCREEN_SENTENCES]])
    except SSPSError as e:
        return {"database": voice.database, "error": str(e).splitlines()[0]}
    ratio = active_ratio(wav, SAMPLE_RATE)
    return {
        "database": voice.database,
        "active_ratio": round(ratio, 3),
        "seconds": round(len(wav) / SAMPLE_RATE, 2),
    }
