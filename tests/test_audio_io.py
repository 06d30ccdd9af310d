"""Audio loading, header info, crops and atomic saves."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ssps.audio.io import audio_duration, audio_info, fixed_crop, load_audio, random_crop, save_audio
from ssps.errors import SSPSError


def _tone(n: int, sr: int = 16000, freq: float = 300.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_then_load_round_trip(tmp_path, suffix):
    wav = _tone(4000)
    path = tmp_path / f"a{suffix}"
    save_audio(path, wav)
    assert sf.info(str(path)).subtype == "PCM_16"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    got = load_audio(path)
    assert got.dtype == np.float32 and got.shape == (4000,)
    np.testing.assert_allclose(got, wav, atol=1 / 32768 + 1e-6)
    assert audio_info(path) == (4000, 16000, 1)
    assert audio_duration(path) == pytest.approx(0.25)


def test_ogg_loads(tmp_path):
    path = tmp_path / "a.ogg"
    sf.write(str(path), _tone(8000), 16000, format="OGG", subtype="VORBIS")
    assert load_audio(path).shape[0] == 8000


def test_stereo_is_averaged(tmp_path):
    left, right = _tone(1000), _tone(1000, freq=700.0)
    path = tmp_path / "s.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    assert audio_info(path) == (1000, 16000, 2)
    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-7)


def test_resampled_to_target_rate(tmp_path):
    path = tmp_path / "r.wav"
    sf.write(str(path), _tone(8000, sr=8000), 8000, subtype="FLOAT")  # 1 s of 300 Hz at 8 kHz
    got = load_audio(path, sample_rate=16000)
    assert got.shape == (16000,)
    # The tone survives resampling: compare away from the edges, where the filter rings.
    np.testing.assert_allclose(got[1000:-1000], _tone(16000)[1000:-1000], atol=1e-3)


def test_missing_file(tmp_path):
    with pytest.raises(SSPSError, match="nope.wav: audio file not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(SSPSError, match="not found"):
        audio_info(tmp_path / "nope.wav")


def test_corrupt_file_is_one_line(tmp_path):
    path = tmp_path / "bad.flac"
    path.write_bytes(b"this is not audio" * 10)
    with pytest.raises(SSPSError, match="bad.flac: cannot read audio") as info:
        load_audio(path)
    assert "\n" not in str(info.value)


def test_empty_and_silent_files(tmp_path):
    empty, silent = tmp_path / "empty.wav", tmp_path / "silent.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 16000)
    sf.write(str(silent), np.zeros(100, dtype=np.float32), 16000)
    with pytest.raises(SSPSError, match="empty.wav: audio file has 0 samples"):
        load_audio(empty)
    with pytest.raises(SSPSError, match="silent.wav: audio is all zeros"):
        load_audio(silent)


def test_save_rejects_unknown_suffix(tmp_path):
    with pytest.raises(SSPSError, match="x.mp3"):
        save_audio(tmp_path / "x.mp3", _tone(10))


def test_random_crop_is_a_window_of_the_input():
    wav = np.arange(100, dtype=np.float32)
    starts = set()
    for seed in range(20):
        crop = random_crop(wav, 30, np.random.default_rng(seed))
        assert crop.shape == (30,)
        np.testing.assert_array_equal(crop, wav[int(crop[0]) : int(crop[0]) + 30])
        starts.add(int(crop[0]))
    assert len(starts) > 5
    # Same generator state, same crop.
    a = random_crop(wav, 30, np.random.default_rng(7))
    np.testing.assert_array_equal(a, random_crop(wav, 30, np.random.default_rng(7)))


def test_short_input_is_wrap_padded():
    wav = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    expected = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0]  # repeated more than once
    assert random_crop(wav, 8, np.random.default_rng(0)).tolist() == expected
    assert fixed_crop(wav, 8).tolist() == expected
    assert fixed_crop(wav, 3).tolist() == [1.0, 2.0, 3.0]


def test_fixed_crop_start_and_centre():
    wav = np.arange(10, dtype=np.float32)
    assert fixed_crop(wav, 4).tolist() == [3.0, 4.0, 5.0, 6.0]
    assert fixed_crop(wav, 4, start=0).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert fixed_crop(wav, 4, start=100).tolist() == [6.0, 7.0, 8.0, 9.0]  # clipped into range


def test_crops_are_copies():
    wav = np.arange(10, dtype=np.float32)
    random_crop(wav, 4, np.random.default_rng(0))[:] = -1
    fixed_crop(wav, 4)[:] = -1
    assert wav.tolist() == list(range(10))
