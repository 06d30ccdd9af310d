"""Rooms, microphones, codecs and levels on plain numpy signals (no TTS)."""

import shutil
import time

import numpy as np
import pytest
from scipy.signal import sosfreqz

from ssps.augment.channel import apply_codec, apply_microphone, microphone_response, set_level
from ssps.augment.reverb import reverberate, simulate_rir
from ssps.errors import SSPSError

SR = 16000


def _tone(seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    # A modulated chord: speech-band energy with an envelope, so delays and smearing are visible.
    x = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1250 * t) + 0.3 * np.sin(2 * np.pi * 2700 * t)
    return (0.2 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_rir_is_deterministic_for_a_seed_and_varies_across_seeds():
    a = simulate_rir(np.random.default_rng(3))
    b = simulate_rir(np.random.default_rng(3))
    c = simulate_rir(np.random.default_rng(4))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert len(a) != len(c) or not np.allclose(a, c)


def test_rir_has_direct_path_peak_and_decays():
    rir = simulate_rir(np.random.default_rng(0), room_dims=(6.0, 5.0, 3.0), rt60=0.5, distance=1.0)
    peak = int(np.argmax(np.abs(rir)))
    assert np.abs(rir[peak]) == pytest.approx(1.0)
    # The direct path arrives ~1 m / 343 m/s = 2.9 ms after pyroomacoustics' fixed filter delay.
    assert peak < 0.05 * SR
    energy = np.square(rir[peak:].astype(np.float64))
    quarter = len(energy) // 4
    early, late = energy[:quarter].sum(), energy[-quarter:].sum()
    assert late < 0.1 * early


def test_longer_rt60_gives_longer_tail():
    short = simulate_rir(np.random.default_rng(0), room_dims=(6.0, 5.0, 3.0), rt60=0.2, distance=1.5)
    long = simulate_rir(np.random.default_rng(0), room_dims=(6.0, 5.0, 3.0), rt60=0.8, distance=1.5)

    def tail_fraction(h):
        p = int(np.argmax(np.abs(h)))
        e = np.square(h[p:].astype(np.float64))
        return e[int(0.05 * SR) :].sum() / e.sum()

    assert tail_fraction(long) > 2 * tail_fraction(short)


def test_rir_is_fast():
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for _ in range(5):
        simulate_rir(rng, rt60=0.9, room_dims=(10.0, 8.0, 4.0))
    assert (time.perf_counter() - start) / 5 < 0.5


def test_reverberate_keeps_length_level_and_alignment():
    x = _tone()
    rir = simulate_rir(np.random.default_rng(2), rt60=0.6, distance=2.0)
    y = reverberate(x, rir)
    assert y.shape == x.shape and y.dtype == np.float32
    assert _rms(y) == pytest.approx(_rms(x), rel=1e-4)
    assert not np.allclose(x, y, atol=1e-3)
    # Aligned to the direct path: a click comes out where it went in.
    click = np.zeros(4000, np.float32)
    click[1000] = 1.0
    assert int(np.argmax(np.abs(reverberate(click, rir)))) == 1000


def test_microphone_is_deterministic_band_limited_and_bounded():
    a = microphone_response(np.random.default_rng(5), SR)
    b = microphone_response(np.random.default_rng(5), SR)
    assert a.shape[1] == 6 and np.array_equal(a, b)
    for seed in range(10):
        sos = microphone_response(np.random.default_rng(seed), SR)
        freqs, h = sosfreqz(sos, worN=2048, fs=SR)
        gain_db = 20 * np.log10(np.abs(h) + 1e-12)
        assert gain_db[freqs < 30].max() < -15  # the high-pass removes rumble
        band = (freqs > 500) & (freqs < 3000)
        assert gain_db[band].max() < 13 and gain_db[band].min() > -20  # smooth: no notch in the speech band


def test_apply_microphone_keeps_length_and_changes_signal():
    x = _tone()
    y = apply_microphone(x, microphone_response(np.random.default_rng(0), SR))
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.allclose(x, y, atol=1e-3)
    assert np.corrcoef(x, y)[0, 1] > 0.3


def test_set_level():
    x = _tone()
    assert 20 * np.log10(_rms(set_level(x, -30.0))) == pytest.approx(-30.0, abs=1e-3)
    loud = set_level(x, 0.0)  # would clip: limited instead
    assert np.max(np.abs(loud)) <= 0.99 + 1e-6
    assert np.array_equal(set_level(np.zeros(10, np.float32), -20.0), np.zeros(10, np.float32))


def test_codec_rejects_unknown_name():
    with pytest.raises(SSPSError, match="expected one of"):
        apply_codec(_tone(), "mp3")


@pytest.mark.requires("sox")
@pytest.mark.parametrize("codec", ["gsm", "mulaw"])
def test_codec_differs_but_correlates(codec):
    x = _tone(0.7)
    y = apply_codec(x, codec, SR)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.max(np.abs(x - y)) > 1e-3
    assert np.corrcoef(x, y)[0, 1] > 0.9
    assert np.array_equal(y, apply_codec(x, codec, SR))  # deterministic


def test_codec_names_missing_sox(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SSPSError, match="sox"):
        apply_codec(_tone(0.1), "gsm")
    assert np.array_equal(apply_codec(_tone(0.1), "none"), _tone(0.1))
