"""Training augmentation: SNRs, noise sources, RIR bank and the strategies of the Augmenter."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from ssps.augment import noise, noise_files
from ssps.augment.compose import STRATEGIES, Augmenter, RIRBank
from ssps.config import AugmentConfig
from ssps.data.manifest import Utterance, write_manifest
from ssps.errors import SSPSError

RATE = 16000


def _speech_like(n: int = 2 * RATE, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonics with a pause in the middle: active power != mean power."""
    t = np.arange(n) / RATE
    wav = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), start=1))
    wav = wav * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) * 0.2
    wav[n // 3 : n // 2] = 0.0
    return (wav + np.random.default_rng(seed).normal(0, 1e-5, n)).astype(np.float32)


def _snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    return 10 * np.log10(noise.active_power(clean) / noise.active_power(noisy - clean))


def _write(path: Path, wav: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, RATE)
    return path


@settings(max_examples=30, deadline=None)
@given(snr=st.floats(-5, 30), noise_len=st.integers(100, 80000), seed=st.integers(0, 100))
def test_add_noise_hits_snr_and_keeps_length(snr, noise_len, seed):
    wav = _speech_like(seed=seed)
    n = np.random.default_rng(seed).standard_normal(noise_len)
    out = noise.add_noise(wav, n, snr)
    assert out.shape == wav.shape and out.dtype == np.float32
    assert abs(_snr(wav, out) - snr) < 0.5


def test_active_power_ignores_pauses_and_plain_power_agrees_on_stationary():
    tone = np.sin(np.arange(RATE) * 0.2)
    with_pause = np.concatenate([tone, np.zeros(RATE)])
    assert noise.active_power(with_pause) == pytest.approx(0.5, rel=0.01)
    # Stationary signals: the SNR from plain mean powers (an independent measure) matches too.
    out = noise.add_noise(tone, np.random.default_rng(0).standard_normal(5000), 7.0)
    assert 10 * np.log10(np.mean(tone**2) / np.mean((out - tone) ** 2)) == pytest.approx(7.0, abs=0.5)


def test_silent_inputs_add_nothing():
    wav = _speech_like()
    assert np.array_equal(noise.add_noise(wav, np.zeros(100), 5.0), wav)
    assert np.array_equal(noise.add_noise(np.zeros(1000), np.ones(100), 5.0), np.zeros(1000))


@pytest.mark.parametrize(("colour", "slope"), [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_coloured_noise_spectrum(colour, slope):
    x = noise.coloured_noise(colour, 1 << 16, np.random.default_rng(0))
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.arange(len(power))
    keep = (f > 20) & (f < len(power) // 2)
    fitted = np.polyfit(np.log(f[keep]), np.log(power[keep]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.1)
    assert np.mean(x**2) == pytest.approx(1.0, rel=1e-3)


def _musan(tmp_path: Path) -> Path:
    rows = []
    for category, count in (("speech", 8), ("noise", 2), ("music", 2)):
        for i in range(count):
            rel = f"{category}/src/{category}-{i}.wav"
            rng = np.random.default_rng(i)
            _write(
                tmp_path / rel,
                (rng.standard_normal(int(RATE * rng.uniform(0.5, 3))) * 0.1).astype(np.float32),
            )
            rows.append(Utterance(rel, rel, category, "src", 1.0))
    write_manifest(tmp_path / "musan.tsv", rows)
    return tmp_path / "musan.tsv"


def test_manifest_noise_honours_category_snr_ranges(tmp_path):
    cfg = AugmentConfig(noise_manifest=str(_musan(tmp_path)))
    source = noise_files.noise_source(cfg)
    ranges = {"speech": cfg.musan_speech_snr, "noise": cfg.musan_noise_snr, "music": cfg.musan_music_snr}
    rng = np.random.default_rng(0)
    wav = _speech_like()
    seen, talkers = Counter(), set()
    for _ in range(300):
        draws = source.draw(len(wav), rng)
        kind = draws[0].kind
        seen[kind] += 1
        assert all(d.kind == kind and d.noise.shape == wav.shape for d in draws)
        assert all(ranges[kind][0] <= d.snr_db <= ranges[kind][1] for d in draws)
        if kind == "speech":
            talkers.add(len(draws))
        else:
            assert len(draws) == 1
            assert abs(_snr(wav, noise.mix(wav, draws)) - draws[0].snr_db) < 0.5
    assert set(seen) == {"speech", "noise", "music"} and min(seen.values()) > 60
    assert talkers == {1}  # one MUSAN speech file per draw, as the reference


def test_manifest_noise_rejects_unknown_category(tmp_path):
    _write(tmp_path / "x.wav", np.ones(100, dtype=np.float32) * 0.1)
    write_manifest(tmp_path / "bad.tsv", [Utterance("x.wav", "x.wav", "id10001", "", 0.1)])
    with pytest.raises(SSPSError, match="category 'id10001'; expected one of speech, noise, music"):
        noise_files.noise_source(AugmentConfig(noise_manifest=str(tmp_path / "bad.tsv")))


def test_builtin_sources_without_musan(tmp_path):
    paths = [_write(tmp_path / f"utt{i}.wav", _speech_like(RATE, seed=i)) for i in range(4)]
    cfg = AugmentConfig()
    assert isinstance(noise_files.noise_source(cfg), noise.ColouredNoise)
    source = noise_files.noise_source(cfg, train_paths=paths)
    rng = np.random.default_rng(0)
    kinds = Counter(d.kind for _ in range(200) for d in source.draw(3 * RATE, rng))
    assert set(kinds) == {"white", "pink", "brown", "babble"}
    for _ in range(20):
        draws = source.draw(3 * RATE, rng)
        low, high = cfg.musan_speech_snr if draws[0].kind == "babble" else cfg.musan_noise_snr
        assert all(low <= d.snr_db <= high for d in draws)


def test_audio_cache_is_bounded():
    loads = []

    def load(path):
        loads.append(path)
        return np.zeros(1000, dtype=np.float32)  # 4000 bytes

    cache = noise_files.AudioCache(load, max_bytes=10_000)
    for name in ["a", "b", "a", "c", "a", "b"]:
        cache(name)
    assert cache.bytes <= 10_000
    assert [p.name for p in loads] == ["a", "b", "c", "b"]  # 'b' was the least recently used when 'c' came


def _rir_manifest(tmp_path: Path) -> Path:
    rows = []
    for i in range(3):
        rir = np.zeros((4000, 2), dtype=np.float32)
        rir[50 + 10 * i, :] = 1.0
        rir[200:, 0] = np.exp(-np.arange(3800) / 600) * np.random.default_rng(i).normal(0, 0.1, 3800)
        _write(tmp_path / "rirs" / f"r{i}.wav", rir)
        rows.append(Utterance(f"r{i}.wav", f"rirs/r{i}.wav", "smallroom", "room", 0.25))
    write_manifest(tmp_path / "rir.tsv", rows)
    return tmp_path / "rir.tsv"


def test_rir_bank_from_manifest_and_simulated(tmp_path):
    bank = RIRBank(_rir_manifest(tmp_path))
    rng = np.random.default_rng(0)
    rirs = [bank.draw(rng) for _ in range(20)]
    assert len(bank) == 3 and all(r.ndim == 1 and len(r) == 4000 for r in rirs)
    assert len({int(np.argmax(r)) for r in rirs}) == 3
    a, b = RIRBank(pool_size=3, seed=1), RIRBank(pool_size=3, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a.pool, b.pool, strict=True))


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_augmenter_length_and_seeds(tmp_path, strategy):
    cfg = AugmentConfig(
        strategy=strategy, noise_manifest=str(_musan(tmp_path)), rir_manifest=str(_rir_manifest(tmp_path))
    )
    aug = Augmenter(cfg)
    wav = _speech_like()
    outs = [aug(wav, np.random.default_rng(s)) for s in (1, 1, 2)]
    assert all(o.shape == wav.shape for o in outs)
    assert np.array_equal(outs[0], outs[1])
    if strategy == "none":
        assert all(o is wav for o in outs)
    else:
        assert not np.array_equal(outs[0], outs[2])


def test_strategy_distributions():
    rng = np.random.default_rng(0)
    aug = Augmenter(AugmentConfig(strategy="uniform"), rir_pool_size=2)
    uniform = Counter(aug.choose(rng) for _ in range(4000))
    assert set(uniform) == {(), ("reverb",), ("noise",), ("reverb", "noise")}
    assert all(abs(c / 4000 - 0.25) < 0.03 for c in uniform.values())
    both = Augmenter(AugmentConfig(strategy="both"), rir_pool_size=2)
    assert {both.choose(rng) for _ in range(100)} == {("reverb", "noise")}
    none = Augmenter(AugmentConfig(strategy="none"))
    assert none.noise is None and none.rirs is None and none.choose(rng) == ()


def test_both_changes_the_signal_by_reverb_and_noise():
    aug = Augmenter(AugmentConfig(strategy="both"), rir_pool_size=4)
    wav = _speech_like()
    out = aug(wav, np.random.default_rng(3))
    # Noise at <= 15 dB fills the pause; reverb alone would leave it near silent after the tail.
    pause = slice(len(wav) // 3 + RATE // 4, len(wav) // 2)
    assert np.mean(out[pause] ** 2) > 1e-3 * noise.active_power(wav)
    assert abs(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(wav**2)) - 1) < 0.5


def test_unknown_strategy():
    with pytest.raises(
        SSPSError, match="data.augment.strategy: unknown 'random'; valid: none, both, uniform"
    ):
        Augmenter(AugmentConfig(strategy="random"))


def test_coloured_bank_wraps_without_a_seam():
    source = noise.ColouredNoise(seconds=0.5, seed=3)
    brown = source.bank["brown"]
    step = np.std(np.diff(brown))
    assert abs(float(brown[0] - brown[-1])) < 5 * step
    draws = source.draw(3 * len(brown), np.random.default_rng(0))  # longer than the bank: looped
    assert draws[0].noise.shape == (3 * len(brown),)


def test_file_noise_excerpts_do_not_depend_on_the_cache(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "long": [_write(tmp_path / "long.wav", rng.standard_normal(5 * RATE).astype(np.float32) * 0.1)],
        "short": [_write(tmp_path / "short.wav", rng.standard_normal(RATE // 2).astype(np.float32) * 0.1)],
    }
    path_8k = tmp_path / "8k.wav"
    sf.write(str(path_8k), rng.standard_normal(8000 * 5).astype(np.float32) * 0.1, 8000)
    files["resampled"] = [path_8k]
    snr = {k: (0.0, 10.0) for k in files}
    cached, uncached = (
        noise_files.FileNoise(files, snr, cache_bytes=1 << 30),
        noise_files.FileNoise(files, snr, cache_bytes=0),
    )
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(30):
        da, db = cached.draw(2 * RATE, a), uncached.draw(2 * RATE, b)
        assert [d.kind for d in da] == [d.kind for d in db]
        assert all(
            np.array_equal(x.noise, y.noise) and x.noise.shape == (2 * RATE,)
            for x, y in zip(da, db, strict=True)
        )
    assert 0 < cached.cache.bytes and uncached.cache.bytes == 0


def test_augmenter_pickles_for_loader_workers(tmp_path):
    paths = [_write(tmp_path / f"utt{i}.wav", _speech_like(RATE, seed=i)) for i in range(2)]
    aug = Augmenter(AugmentConfig(strategy="both"), train_paths=paths, rir_pool_size=2)
    copy = pickle.loads(pickle.dumps(aug))
    wav = _speech_like()
    assert np.array_equal(aug(wav, np.random.default_rng(4)), copy(wav, np.random.default_rng(4)))
