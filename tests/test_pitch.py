"""F0 by YIN, and the median F0 as a label-free cue beside the embedding in the pseudo-label clustering."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.signal
import torch
from test_train import tiny_cfg

from ssps.audio.pitch import median_log2_f0, yin
from ssps.checkpoint import save_checkpoint
from ssps.cli import main
from ssps.embedder import Embedder
from ssps.errors import SSPSError
from ssps.pseudo.prosody import mix_pitch

SR = 16000


def voice(f0: float, seconds: float = 1.0, snr_db: float = 20.0, seed: int = 0) -> np.ndarray:
    """A glottal-like pulse train at ``f0`` with a slow vibrato, through two formant resonators, in noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 4 * t))) / SR
    source = np.maximum(np.sin(phase), 0) ** 4
    for centre in (600, 1700):
        b, a = scipy.signal.iirpeak(centre, 5, fs=SR)
        source = scipy.signal.lfilter(b, a, source)
    source -= source.mean()
    noise = rng.standard_normal(len(t)) * source.std() * 10 ** (-snr_db / 20)
    return source + noise


@pytest.mark.parametrize("f0", [75.0, 110.0, 180.0, 290.0])
def test_yin_finds_the_f0_of_a_noisy_voiced_signal(f0):
    assert 2 ** median_log2_f0(voice(f0), SR) == pytest.approx(f0, rel=0.02)
    assert 2 ** median_log2_f0(0.01 * voice(f0, snr_db=10), SR) == pytest.approx(f0, rel=0.03)


def test_yin_marks_noise_and_silence_unvoiced_and_keeps_the_frame_count():
    f0 = yin(np.random.default_rng(0).standard_normal(SR), SR)
    assert len(f0) == 1 + (SR - 1024) // 160 and np.isnan(f0).mean() > 0.9
    assert np.isnan(median_log2_f0(np.zeros(SR), SR))
    assert len(yin(np.ones(100), SR)) == 0  # shorter than one frame
    half = np.concatenate([np.zeros(SR // 2), voice(150.0, 0.5)])
    frames = yin(half, SR)
    assert np.isnan(frames[:40]).all() and np.nanmedian(frames[-30:]) == pytest.approx(150, rel=0.02)
    with pytest.raises(ValueError, match="fmin=20"):
        yin(voice(150.0), SR, fmin=20)


def test_mix_pitch_is_the_weighted_sum_of_the_two_cosines():
    g = np.random.default_rng(0)
    x = g.standard_normal((20, 8))
    pitch = g.uniform(6.5, 8.0, 20)
    pitch[3] = np.nan  # unvoiced: takes the median pitch
    a = 0.3
    v = mix_pitch(x, pitch, a)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    filled = np.where(np.isnan(pitch), np.nanmedian(pitch), pitch)
    lo, hi = np.percentile(filled, [1, 99])
    t = np.pi * np.clip((filled - lo) / (hi - lo), 0, 1)
    expected = (1 - a) * xn @ xn.T + a * np.cos(t[:, None] - t[None, :])
    assert np.allclose(v @ v.T, expected, atol=1e-5)
    assert np.allclose(mix_pitch(x, pitch, 0.0)[:, :8], xn, atol=1e-6)
    with pytest.raises(SSPSError, match="pitch=1.0 must be a weight in"):
        mix_pitch(x, pitch, 1.0)
    with pytest.raises(SSPSError, match="no utterance has a voiced frame"):
        mix_pitch(x, np.full(20, np.nan), 0.5)


def test_pitch_separates_speakers_that_a_random_model_cannot(toy_corpus, tmp_path, capsys):
    """The toy speakers differ in F0 (100, 140, 180, 220 Hz); a random TDNN's embeddings barely tell them
    apart, the median F0 does. The speaker column is not read for the labels (only the diagnostics)."""
    cfg = tiny_cfg(toy_corpus)
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, cfg, Embedder(cfg).state_dict())
    args = ["pseudo-label", str(ckpt), "--manifest", str(toy_corpus / "train.tsv")]
    args += ["--clusters", "8", "--criterion", "count", "--speakers", "4"]
    nmi = {}
    for w in ("0", "0.9"):
        assert main([*args, "--out", str(tmp_path / w), "--pitch", w]) == 0
        report = json.loads((tmp_path / w / "quality.json").read_text())
        nmi[w] = report["quality"]["nmi"]
    assert report["unvoiced"] == 0 and report["settings"]["pitch"] == 0.9
    assert nmi["0.9"] == pytest.approx(1.0) and nmi["0"] < 0.9
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "bad"), "--pitch", "1.5"]) == 2
    assert "pitch=1.5 must be a weight in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything was embedded or written
