"""Per-session recording conditions: room, microphone, background noise, phone codec and level.

Every (speaker, session) of the corpus draws one :class:`Condition` and applies it to all its utterances,
so that utterances of one session share a channel, as in VoxCeleb videos. ``mild`` and ``hard`` are two
distributions of conditions; ``kind`` groups conditions that sound alike (noise type and codec), which the
trial lists use for hard non-targets.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> cond = draw_condition(rng, "hard")
>>> chain = cond.build()
>>> wav = apply_condition(rng.standard_normal(16000).astype(np.float32) * 0.1, cond, chain, rng)
>>> wav.shape, wav.dtype
((16000,), dtype('float32'))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import lfilter

from ssps.augment.channel import apply_codec, apply_microphone, microphone_response, set_level
from ssps.augment.reverb import reverberate, simulate_rir
from ssps.errors import SSPSError

NOISE_TYPES = ("white", "pink", "brown", "hum")

# Each distribution: ranges drawn uniformly, probabilities of a codec, peaking-EQ strength of the mic.
DISTRIBUTIONS = {
    "mild": dict(
        rt60=(0.15, 0.5), distance=(0.3, 1.5), snr=(15.0, 30.0), level=(-32.0, -20.0),
        codec=(("none", 0.8), ("mulaw", 0.1), ("gsm", 0.1)), mic_peak_db=3.0, lowpass=(5000.0, 8000.0),
    ),
    "hard": dict(
        rt60=(0.3, 0.9), distance=(0.5, 3.0), snr=(0.0, 15.0), level=(-40.0, -15.0),
        codec=(("none", 0.5), ("mulaw", 0.25), ("gsm", 0.25)), mic_peak_db=6.0, lowpass=(3400.0, 8000.0),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    """One session's recording condition (JSON-friendly: plain numbers and strings)."""

    room: tuple[float, float, float]  # metres
    rt60: float  # seconds
    distance: float  # source-microphone, metres
    mic_seed: int  # seeds the microphone response and the room geometry
    mic_peak_db: float
    lowpass: tuple[float, float]
    noise: str  # one of NOISE_TYPES
    snr: float  # dB
    codec: str  # none | mulaw | gsm
    level: float  # dBFS RMS

    @property
    def kind(self) -> str:
        """Conditions of one kind sound alike: same noise type and same codec."""
        return f"{self.noise}-{self.codec}"

    def build(self, sample_rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
        """The session's fixed filters: (RIR (L,), microphone second-order sections (S, 6))."""
        rng = np.random.default_rng(self.mic_seed)
        rir = simulate_rir(rng, sample_rate, room_dims=self.room, rt60=self.rt60, distance=self.distance)
        mic = microphone_response(rng, sample_rate, peak_gain_db=self.mic_peak_db, lowpass_range=self.lowpass)
        return rir, mic

    def to_json(self) -> dict:
        return asdict(self) | {"kind": self.kind}


def draw_condition(rng: np.random.Generator, channels: str = "mild") -> Condition:
    """Draw one session's condition from the ``mild`` or ``hard`` distribution."""
    if channels not in DISTRIBUTIONS:
        raise SSPSError(f"--channels {channels!r}: expected one of {', '.join(DISTRIBUTIONS)}")
    d = DISTRIBUTIONS[channels]
    room = (float(rng.uniform(3, 10)), float(rng.uniform(3, 8)), float(rng.uniform(2.4, 4)))
    codecs, probs = zip(*d["codec"], strict=True)
    return Condition(
        room=tuple(round(x, 3) for x in room),
        rt60=round(float(rng.uniform(*d["rt60"])), 3),
        distance=round(float(rng.uniform(*d["distance"])), 3),
        mic_seed=int(rng.integers(2**31)),
        mic_peak_db=d["mic_peak_db"],
        lowpass=d["lowpass"],
        noise=str(rng.choice(NOISE_TYPES)),
        snr=round(float(rng.uniform(*d["snr"])), 2),
        codec=str(rng.choice(codecs, p=probs)),
        level=round(float(rng.uniform(*d["level"])), 2),
    )


def noise(kind: str, n: int, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """(n,) float32 background noise of unit RMS: white, pink (1/f), brown (1/f^2) or mains hum."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        # Paul Kellet's economy pink filter: -3 dB/octave within 0.5 dB over the audio band.
        b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
        a = [1.0, -2.494956002, 2.017265875, -0.522189400]
        x = lfilter(b, a, rng.standard_normal(n))
    elif kind == "brown":
        x = lfilter([1.0], [1.0, -0.995], rng.standard_normal(n))  # leaky integrator: -6 dB/octave
    elif kind == "hum":
        t = np.arange(n) / sample_rate
        f0 = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
        x = x + 0.3 * rng.standard_normal(n)
    else:
        raise SSPSError(f"noise type {kind!r}: expected one of {', '.join(NOISE_TYPES)}")
    x = np.asarray(x, dtype=np.float64)
    x -= x.mean()
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def apply_condition(
    wav: np.ndarray,
    cond: Condition,
    chain: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    codec: bool = True,
) -> np.ndarray:
    """Record clean speech under a condition: room -> microphone -> noise at the SNR -> codec -> level.

    Args:
        wav: (T,) clean speech.
        cond: the session's condition.
        chain: ``cond.build(...)``, built once per session.
        rng: draws the noise samples (the noise type and SNR are the session's).
        codec: False leaves the codec out, for callers that run it once over a whole session.

    Returns:
        (T,) float32.
    """
    rir, mic = chain
    x = apply_microphone(reverberate(wav, rir), mic)
    speech_rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    x = x + noise(cond.noise, len(x), rng) * np.float32(speech_rms * 10 ** (-cond.snr / 20))
    x = set_level(x, cond.level)
    if codec and cond.codec != "none":
        x = set_level(apply_codec(x, cond.codec), cond.level)
    return x
