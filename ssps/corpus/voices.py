"""Speaker identities from MBROLA diphone databases, driven by espeak-ng.

Each MBROLA database is one real person's recordings. espeak-ng turns English text into phonemes with
durations and pitch (``--pho``) through the voice ``mb-<db>`` (or the English mapping ``mb-<db>-en`` where
espeak-ng has one); ``mbrola`` then renders them. MBROLA's own controls derive further identities from
one database: ``-f`` scales pitch, ``-t`` scales durations (tempo) and ``-l`` renders at a different
sampling rate, which shifts the formants as a different vocal-tract length would.

>>> ident = Identity("us1_b", Voice("us1", "mb-us1", "en-us", "F"), pitch=1.3, formant=0.9, tempo=1.1)
>>> ident.base, ident.is_sibling
('us1', True)
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ssps.errors import SSPSError

MBROLA_DIR = Path("/usr/share/mbrola")
INSTALL_HINT = (
    "install them with `make system` (scripts/setup_system.sh: apt-get install espeak-ng mbrola ...)"
)


@dataclass(frozen=True)
class Voice:
    database: str  # MBROLA database name, e.g. "de1": one real person
    espeak_voice: str  # espeak-ng voice that drives it, e.g. "mb-de1-en"
    language: str  # that espeak-ng voice's language
    gender: str  # "M" or "F" as espeak-ng lists it


@dataclass(frozen=True)
class Identity:
    """A speaker of the corpus: a voice, possibly with MBROLA pitch / formant / tempo ratios (a sibling)."""

    name: str
    voice: Voice
    pitch: float = 1.0
    formant: float = 1.0
    tempo: float = 1.0  # speaking rate: 1.2 speaks 20 % faster

    @property
    def base(self) -> str:
        return self.voice.database

    @property
    def is_sibling(self) -> bool:
        return (self.pitch, self.formant, self.tempo) != (1.0, 1.0, 1.0)


def check_tools() -> None:
    """Raise a one-line SSPSError naming what to install when espeak-ng or mbrola is missing."""
    missing = [tool for tool in ("espeak-ng", "mbrola") if shutil.which(tool) is None]
    if missing:
        raise SSPSError(f"{' and '.join(missing)} not found: {INSTALL_HINT}")


def database_path(database: str) -> Path | None:
    """The installed MBROLA database file (Debian: /usr/share/mbrola/<db>/<db>), or None."""
    for p in (MBROLA_DIR / database / database, MBROLA_DIR / database):
        if p.is_file():
            return p
    return None


@functools.lru_cache(maxsize=1)
def installed_voices() -> dict[str, Voice]:
    """Every installed MBROLA database, once, with the espeak-ng voice that reads English best.

    A database with an English mapping (``mb-de1-en``) uses it; the natively English ones (us1-3, en1)
    use their own voice; the others read English through their own language's rules.

    Returns:
        database name -> Voice, sorted by name.
    """
    check_tools()
    out = subprocess.run(["espeak-ng", "--voices=mb"], capture_output=True, text=True, check=True).stdout
    best: dict[str, tuple[int, Voice]] = {}
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) < 5 or not f[4].startswith("mb/mb-"):
            continue
        language, gender, variant = f[1], f[2].split("/")[-1], f[4].removeprefix("mb/")
        database = variant.removeprefix("mb-").split("-")[0]
        if database_path(database) is None:
            continue
        suffix = variant.removeprefix(f"mb-{database}")
        # Rank: English mapping, then the database's own voice; other variants (e.g. -grc) last.
        rank = 0 if suffix == "-en" or language.startswith("en") else 1 if suffix == "" else 2
        voice = Voice(database, variant, language, gender)
        if database not in best or rank < best[database][0]:
            best[database] = (rank, voice)
    return {db: best[db][1] for db in sorted(best)}


def find_voice(database: str) -> Voice:
    """The installed voice for ``database``; a one-line error naming the package when it is missing."""
    voices = installed_voices()
    if database not in voices:
        raise SSPSError(
            f"MBROLA voice {database!r} is not installed: apt-get install mbrola-{database} "
            f"(or `make system`); installed: {', '.join(voices) or 'none'}"
        )
    return voices[database]


def synthesize(
    ident: Identity, text: str, sample_rate: int = 16000, pitch: float = 1.0, tempo: float = 1.0
) -> np.ndarray:
    """Speak ``text`` with an identity.

    Args:
        ident: the speaker.
        text: English text.
        sample_rate: output rate in Hz.
        pitch, tempo: per-utterance jitter ratios (pitch, speaking rate), multiplied into the identity's own.

    Returns:
        (T,) float32 waveform at ``sample_rate``.
    """
    db = database_path(ident.base)
    if db is None:
        find_voice(ident.base)  # raises the install hint
    pho = subprocess.run(
        ["espeak-ng", "-q", "--pho", "-v", ident.voice.espeak_voice, "--", text],
        capture_output=True,
        text=True,
    )
    if pho.returncode != 0 or not pho.stdout.strip():
        raise SSPSError(f"espeak-ng voice {ident.voice.espeak_voice}: {pho.stderr.strip() or 'no phonemes'}")
    native = _native_rate(ident.base)
    # mbrola -t scales durations: the inverse of the speaking rate.
    args = ["-e", "-f", f"{ident.pitch * pitch:.4f}", "-t", f"{1 / (ident.tempo * tempo):.4f}"]
    if ident.formant != 1.0:
        # Rendering at native * formant Hz and reading it back as such scales every formant by `formant`.
        args += ["-l", str(round(native * ident.formant))]
    with tempfile.TemporaryDirectory(prefix="ssps-tts-") as tmp:
        out = Path(tmp, "out.wav")
        run = subprocess.run(
            ["mbrola", *args, str(db), "-", str(out)], input=pho.stdout, capture_output=True, text=True
        )
        if run.returncode != 0 or not out.is_file():
            raise SSPSError(f"mbrola {ident.base}: {run.stderr.strip().splitlines()[-1:] or 'no output'}")
        wav, rate = sf.read(out, dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    if rate != sample_rate:
        wav = soxr.resample(wav, rate, sample_rate).astype(np.float32)
    return wav


@functools.cache
def _native_rate(database: str) -> int:
    """The database's own sampling rate (16 kHz or 22.05 kHz), read from a tiny rendering."""
    with tempfile.TemporaryDirectory(prefix="ssps-tts-") as tmp:
        out = Path(tmp, "rate.wav")
        cmd = ["mbrola", "-e", str(database_path(database)), "-", str(out)]
        subprocess.run(cmd, input="_ 50\n", text=True, capture_output=True)
        if not out.is_file():
            raise SSPSError(f"mbrola cannot render database {database!r}: reinstall mbrola-{database}")
        return sf.info(out).samplerate


def active_ratio(
    wav: np.ndarray, sample_rate: int = 16000, floor_db: float = -55.0, range_db: float = 35.0
) -> float:
    """Fraction of 25 ms frames (10 ms hop) that carry speech energy.

    A frame is active when its energy is above ``floor_db`` dBFS and within ``range_db`` of the loud frames
    (95th percentile), which tolerates level differences between voices.

    Args:
        wav: (T,) waveform.

    Returns:
        A value in [0, 1]; 0 for audio shorter than one frame.
    """
    win, hop = int(0.025 * sample_rate), int(0.010 * sample_rate)
    if len(wav) < win:
        return 0.0
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(wav, np.float64), win)[::hop]
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    threshold = max(floor_db, np.percentile(energy, 95) - range_db)
    return float(np.mean(energy > threshold))


# Candidate sibling steps (pitch, formant, tempo ratios), by the base voice's gender. Large and combined:
# pitch/formant steps of 12-25 % alone left siblings nearly indistinguishable in a prototype.
SIBLING_STEPS = {
    "M": ((1.45, 1.15, 0.85), (0.72, 0.9, 1.15)),
    "F": ((0.7, 0.87, 1.18), (1.3, 1.12, 0.87)),
}


def sibling_candidates(voice: Voice, n: int) -> list[Identity]:
    """Up to ``n`` candidate siblings of a voice, named ``<db>-s1``, ``<db>-s2``."""
    steps = SIBLING_STEPS["F" if voice.gender == "F" else "M"][:n]
    return [
        Identity(f"{voice.database}-s{k}", voice, pitch=p, formant=f, tempo=t)
        for k, (p, f, t) in enumerate(steps, start=1)
    ]
