"""The fast data path gives the same samples: RAM store, crop-only reads and whole-file decoding agree bit
for bit; the cached reverb equals fftconvolve; the store is shared, not copied."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf

from ssps.audio.clips import ArrayClip, FileClip, crop_centre, crop_random
from ssps.audio.io import fixed_crop, load_audio, random_crop
from ssps.config import AugmentConfig
from ssps.data import audio_store
from ssps.data.audio_store import AudioStore, build_store
from ssps.data.dataset import TrainDataset
from ssps.data.manifest import read_manifest
from ssps.data.views import CropSpec, Views
from ssps.errors import SSPSError

SR = 16000


def test_file_and_array_clips_crop_like_the_decoded_waveform(tmp_path):
    rng = np.random.default_rng(0)
    wav = (0.3 * rng.standard_normal(SR * 3)).clip(-1, 1).astype(np.float32)
    for name, subtype in (("a.flac", "PCM_16"), ("b.wav", "PCM_16"), ("c.wav", "FLOAT")):
        sf.write(tmp_path / name, wav, SR, subtype=subtype)
        decoded = load_audio(tmp_path / name)
        raw, _ = sf.read(tmp_path / name, dtype="int16") if subtype == "PCM_16" else (decoded, None)
        for n in (8000, SR * 3, SR * 4):  # inside, exactly the length, wrap-padded
            want = random_crop(decoded, n, np.random.default_rng(n))
            for clip in (FileClip(tmp_path / name), ArrayClip(raw), ArrayClip(decoded)):
                assert np.array_equal(crop_random(clip, n, np.random.default_rng(n)), want), (name, n, clip)
                assert np.array_equal(crop_centre(clip, n), fixed_crop(decoded, n))


def test_file_clip_reports_a_short_read(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(100, np.float32), SR)
    clip = FileClip(tmp_path / "a.wav")
    with pytest.raises(SSPSError, match="a.wav: read 50 of 60 frames"):
        clip.read(50, 110)


def _views(with_augment: bool) -> Views:
    from ssps.augment.compose import Augmenter

    augment = Augmenter(AugmentConfig(strategy="both"), rir_pool_size=3) if with_augment else None
    return Views([CropSpec(2, 0.5)], augment, reference_seconds=1.0)


@pytest.mark.parametrize("with_augment", [False, True])
def test_store_crop_reads_and_whole_decode_give_identical_items(toy_corpus, tmp_path, with_augment):
    manifest = read_manifest(toy_corpus / "train.tsv")
    rows = list(range(len(manifest)))
    store = build_store(manifest, rows, SR, budget_gb=1.0, directory=tmp_path)
    assert store is not None and len(store.row_of) == len(rows)  # the toy corpus is 16-bit mono at 16 kHz
    views = _views(with_augment)
    whole = TrainDataset(manifest, lambda wav, rng: views(wav, rng), seed=3)  # the old path: decode all
    crops = TrainDataset(manifest, views, seed=3)
    ram = TrainDataset(manifest, views, seed=3, store=store)
    assert not whole.reads_clips and crops.reads_clips
    for key in [(i, e) for i in rows[:12] for e in (0, 1)]:
        a, b, c = whole[key], crops[key], ram[key]
        for x in (b, c):
            assert x["index"] == a["index"] and x["failed"] == a["failed"] == []
            assert all(np.array_equal(u, v) for u, v in zip(x["views"], a["views"], strict=True))
            assert np.array_equal(x["reference"], a["reference"])


def test_babble_from_the_store_equals_babble_from_disk(toy_corpus, tmp_path):
    from ssps.augment.compose import Augmenter

    manifest = read_manifest(toy_corpus / "train.tsv")
    rows = list(range(len(manifest)))
    paths = [str(manifest.resolve(i)) for i in rows]
    store = build_store(manifest, rows, SR, budget_gb=1.0, directory=tmp_path)
    cfg = AugmentConfig(strategy="both")
    disk, ram = (
        Augmenter(cfg, train_paths=paths, rir_pool_size=2),
        Augmenter(cfg, train_paths=paths, rir_pool_size=2, train_audio=store),
    )
    # A short crop (talkers cut from inside their files) and one longer than every file (talkers looped).
    longest = max(len(load_audio(p)) for p in paths)
    for wav in (load_audio(paths[0])[:8000], np.tile(load_audio(paths[0]), longest // 8000 + 2)):
        for seed in range(20):
            a, b = disk(wav, np.random.default_rng(seed)), ram(wav, np.random.default_rng(seed))
            assert np.array_equal(a, b)


def test_store_finds_files_however_the_manifest_path_was_spelled(toy_corpus, tmp_path, monkeypatch):
    """Runs from other folders share one store (same key): babble must still find every file in it, not
    silently read the disk (it once did, after a run with a relative manifest path). A path through a
    symlink is another spelling: its run gets a store of its own, and finds its files there too."""
    monkeypatch.chdir(toy_corpus.parent)
    relative = read_manifest(f"{toy_corpus.name}/train.tsv")
    rows = list(range(len(relative)))
    store = build_store(relative, rows, SR, budget_gb=1.0, directory=tmp_path)
    absolute = read_manifest(toy_corpus / "train.tsv")
    again = build_store(absolute, rows, SR, budget_gb=1.0, directory=tmp_path)
    assert again.path == store.path  # the same store
    monkeypatch.chdir(tmp_path)
    for i in rows:
        expected = load_audio(absolute.resolve(i))
        assert np.array_equal(again.get(absolute.resolve(i)), expected)
        assert np.array_equal(again.get(str(absolute.resolve(i))), expected)
    link = tmp_path / "link"
    link.symlink_to(toy_corpus, target_is_directory=True)
    linked = read_manifest(link / "train.tsv")
    other = build_store(linked, rows, SR, budget_gb=1.0, directory=tmp_path)
    for i in rows:
        assert np.array_equal(other.get(linked.resolve(i)), load_audio(absolute.resolve(i)))


def test_cached_reverb_spectra_equal_fftconvolve():
    from ssps.augment.reverb import RIRSpectra, reverberate, simulate_rir

    rng = np.random.default_rng(0)
    spectra = RIRSpectra()
    rirs = [simulate_rir(rng) for _ in range(2)]
    for n in (8000, 32000, 32000, 8000):
        wav = rng.standard_normal(n).astype(np.float32)
        for key, rir in enumerate(rirs):
            assert np.array_equal(spectra(wav, rir, key), reverberate(wav, rir))


def test_store_is_shared_and_pickles_without_its_samples(toy_corpus, tmp_path):
    manifest = read_manifest(toy_corpus / "train.tsv")
    rows = list(range(len(manifest)))
    store = build_store(manifest, rows, SR, budget_gb=1.0, directory=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".i16") and files[1].endswith(".idx.npz")
    again = build_store(manifest, rows, SR, budget_gb=1.0, directory=tmp_path)  # reused, not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == files and again.path == store.path
    store.clip(0).read(0, 10)  # maps the file
    assert isinstance(store.samples, np.memmap) and not store.samples.flags.writeable
    blob = pickle.dumps(store)
    assert len(blob) < store.nbytes / 10  # a spawned worker maps the file again: no copy travels
    copy = pickle.loads(blob)
    assert np.array_equal(copy.clip(5).read(0, 100), store.clip(5).read(0, 100))


def test_store_off_or_over_budget_reads_from_disk(toy_corpus, tmp_path):
    manifest = read_manifest(toy_corpus / "train.tsv")
    rows = list(range(len(manifest)))
    assert build_store(manifest, rows, SR, budget_gb=0, directory=tmp_path) is None
    assert build_store(manifest, rows, SR, budget_gb=1e-6, directory=tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_store_skips_files_it_cannot_keep_exactly(tmp_path):
    from ssps.data.manifest import Utterance, write_manifest

    tone = (0.3 * np.sin(np.arange(SR) * 0.05)).astype(np.float32)
    sf.write(tmp_path / "ok.wav", tone, SR, subtype="PCM_16")
    sf.write(tmp_path / "float.wav", tone, SR, subtype="FLOAT")
    sf.write(tmp_path / "8k.wav", tone, 8000, subtype="PCM_16")
    sf.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    names = ["ok.wav", "float.wav", "8k.wav", "silent.wav"]
    write_manifest(tmp_path / "m.tsv", [Utterance(n, n, "s", "e", 1.0) for n in names])
    store = build_store(read_manifest(tmp_path / "m.tsv"), [0, 1, 2, 3], SR, 1.0, tmp_path / "shm")
    assert isinstance(store, AudioStore) and [store.clip(i) is not None for i in range(4)] == [
        True,
        False,
        False,
        False,
    ]


def test_keep_freed_memory_applies_on_linux():
    import sys

    from ssps.utils.memory import keep_freed_memory

    assert keep_freed_memory() is sys.platform.startswith("linux")


def test_training_from_the_store_equals_training_from_disk(toy_corpus, tmp_path, monkeypatch):
    import json

    import torch

    from ssps.checkpoint import load_checkpoint
    from ssps.config import load_config
    from ssps.data import audio_store
    from ssps.train.trainer import train

    monkeypatch.setattr(audio_store, "store_dir", lambda: tmp_path / "shm")
    base = [
        "encoder.name=tdnn",
        "encoder.embed_dim=16",
        "encoder.channels=16",
        "method.simclr.crop_seconds=0.5",
        "data.augment.strategy=both",  # reverb and noise, babble from the training files
        "data.min_duration=0.1",
        "train.batch_size=8",
        "train.steps_per_epoch=2",
        "train.epochs=1",
        "train.log_every=1",
        f"data.train_manifest={toy_corpus / 'train.tsv'}",
    ]
    losses, weights = {}, {}
    for gb, workers in ((0.0, 0), (1.0, 0), (1.0, 2)):  # 2 loader workers map the same store
        out = tmp_path / f"run_{gb}_{workers}"
        train(load_config(overrides=[*base, f"data.cache_gb={gb}", f"data.num_workers={workers}"]), out)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses[gb, workers] = [r["loss"] for r in records if r["kind"] == "train"]
        weights[gb, workers] = load_checkpoint(out / "latest.pt")["embedder"]
    assert len(list((tmp_path / "shm").glob("*.i16"))) == 1  # built once, then reused
    disk = (0.0, 0)
    assert len(losses[disk]) == 2
    for key in ((1.0, 0), (1.0, 2)):
        assert losses[key] == losses[disk]
        assert all(torch.equal(weights[key][k], weights[disk][k]) for k in weights[disk])


def test_the_store_folder_follows_ssps_store_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SSPS_STORE_DIR", str(tmp_path / "store"))
    assert audio_store.store_dir() == tmp_path / "store"
    monkeypatch.delenv("SSPS_STORE_DIR")
    assert audio_store.store_dir() != tmp_path / "store"
