"""The log-mel front end against an independent librosa/numpy reference."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from ssps.audio.features import LogMelFrontEnd, _power
from ssps.config import FeaturesConfig
from ssps.errors import SSPSError

torch.set_num_threads(1)


def reference_logmel(wav: np.ndarray, n_mels: int, window: str, sr: int = 16000) -> np.ndarray:
    """(N,) -> (T, n_mels), computed with librosa and numpy only."""
    win = scipy.signal.get_window(window, 400, fftbins=True)
    spec = librosa.stft(
        wav.astype(np.float64), n_fft=512, hop_length=160, win_length=400, window=win, center=True,
        pad_mode="reflect",
    )  # fmt: skip
    power = np.abs(spec) ** 2  # (F, T)
    mel = librosa.filters.mel(sr=sr, n_fft=512, n_mels=n_mels, fmin=20.0, fmax=sr / 2).astype(np.float64)
    logmel = np.log(mel @ power + 1e-6)  # (n_mels, T)
    norm = (logmel - logmel.mean(axis=1, keepdims=True)) / (logmel.std(axis=1, keepdims=True) + 1e-5)
    return norm.T


def _signal(seed: int, n: int = 8000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Noise plus a tone, scaled like speech, so the spectrum has both loud and quiet bins.
    t = np.arange(n) / 16000
    return (0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("window", ["hamming", "hann"])
@pytest.mark.parametrize("n_mels", [40, 80])
def test_matches_librosa_reference(window, n_mels):
    wav = _signal(0)
    front = LogMelFrontEnd(n_mels=n_mels, window=window)
    got = front(torch.from_numpy(wav)[None])[0].numpy()
    want = reference_logmel(wav, n_mels, window)
    assert got.shape == want.shape == (front.num_frames(len(wav)), n_mels)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_batch_rows_equal_single_calls():
    front = LogMelFrontEnd(n_mels=40)
    wavs = np.stack([_signal(s) for s in range(3)])
    wavs[1] *= 0.01  # a quiet row: instance norm must not borrow statistics from the others
    batch = front(torch.from_numpy(wavs))
    for i in range(3):
        single = front(torch.from_numpy(wavs[i : i + 1]))
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-5, rtol=0)


def test_power_spectrum_in_frame_order_is_the_same_power():
    """The front end squares the STFT in (B, T, F) memory order; every bin is still re^2 + im^2 exactly."""
    wav = torch.from_numpy(np.stack([_signal(s, 16000) for s in range(4)]))
    spec = torch.stft(wav, 512, 160, 400, torch.hamming_window(400), return_complex=True)
    power = _power(spec)
    assert power.shape == spec.shape
    assert torch.equal(power, spec.real.square() + spec.imag.square())


def test_instance_norm_statistics():
    feats = LogMelFrontEnd(n_mels=40)(torch.from_numpy(_signal(1))[None])[0]
    torch.testing.assert_close(feats.mean(0), torch.zeros(40), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(0, correction=0), torch.ones(40), atol=1e-3, rtol=0)


def test_num_frames_matches_output():
    front = LogMelFrontEnd()
    for n in (400, 16000, 16159, 32000):
        assert front(torch.randn(1, n)).shape[1] == front.num_frames(n)


def test_from_config_and_buffers_not_in_state_dict():
    cfg = FeaturesConfig(n_mels=80, window="hann")
    front = LogMelFrontEnd.from_config(cfg)
    assert front.mel_matrix.shape == (80, 257)
    assert front.state_dict() == {}  # derived buffers: checkpoints do not depend on the front end


def test_unknown_window_is_user_error():
    with pytest.raises(SSPSError, match="hamming, hann"):
        LogMelFrontEnd(window="blackman")


def test_float32_under_autocast():
    front = LogMelFrontEnd()
    wav = torch.from_numpy(_signal(2))[None]
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        feats = front(wav.bfloat16())
    assert feats.dtype == torch.float32
    torch.testing.assert_close(feats, front(wav.bfloat16().float()), atol=1e-5, rtol=0)


def test_too_short_or_wrong_rank_input():
    front = LogMelFrontEnd()
    with pytest.raises(ValueError, match="more than 256 samples"):
        front(torch.randn(1, 256))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        front(torch.randn(16000))
