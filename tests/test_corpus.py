"""The built-in corpus: ``ssps data synth`` end to end (tiny preset) and its parts."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import require

from ssps.cli import main
from ssps.corpus import voices
from ssps.corpus.conditions import NOISE_TYPES, apply_condition, draw_condition, noise
from ssps.corpus.lists import make_trials
from ssps.corpus.sessions import PRESETS
from ssps.corpus.stats import corpus_stats, crude_embedding, read_trials
from ssps.corpus.synth import synth_corpus
from ssps.corpus.text import sentences
from ssps.data.manifest import COLUMNS, Utterance, read_manifest
from ssps.errors import SSPSError

needs_tts = pytest.mark.requires("espeak-ng", "mbrola")  # fails instead of skipping under CI=true


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    require("espeak-ng", "mbrola")
    out = tmp_path_factory.mktemp("tiny")
    summary = synth_corpus(out, "tiny", seed=3, workers=2, progress=False)
    return out, summary


@needs_tts
def test_tiny_layout_and_manifests(tiny):
    out, summary = tiny
    p = PRESETS["tiny"]
    parts = {name: read_manifest(out / f"{name}.tsv") for name in ("train", "dev", "test")}
    assert (out / "train.tsv").read_text().splitlines()[0].split("\t") == list(COLUMNS)
    rows = [r for m in parts.values() for r in m.rows]
    assert len(rows) == summary["utterances"] == summary["speakers"] * p.sessions * p.utterances
    for name, m in parts.items():
        assert summary[f"{name}_utterances"] == len(m) > 0
        assert summary[f"{name}_speakers"] == len({r.speaker for r in m.rows})
    for m in parts.values():
        for i, r in enumerate(m.rows):
            assert r.utterance == f"{r.speaker}/{r.session}/{r.utterance.split('/')[-1]}"
            assert r.path == f"wav/{r.utterance}" and m.resolve(i).is_file()
            info = sf.info(m.resolve(i))
            assert info.samplerate == 16000 and info.format == "FLAC"
            assert abs(info.frames / 16000 - r.duration) < 1e-3
            assert p.duration[0] - 1e-3 <= r.duration <= p.duration[1] + 1e-3
    # Split by base voice: no speaker in two parts.
    speakers = [{r.speaker for r in m.rows} for m in parts.values()]
    assert sum(map(len, speakers)) == len(set().union(*speakers)) == summary["speakers"]
    # Session ids are opaque recording ids, unique across the corpus: grouping by the session column alone
    # gives exactly one speaker per session, without reading the speaker column.
    by_session: dict[str, set[str]] = {}
    for r in rows:
        by_session.setdefault(r.session, set()).add(r.speaker)
        assert r.speaker not in r.session
    assert len(by_session) == summary["sessions"] and all(len(v) == 1 for v in by_session.values())
    corpus = json.loads((out / "corpus.json").read_text())
    assert corpus["manifest_sha256"] == summary["manifest_sha256"]
    assert len(corpus["session_conditions"]) == summary["sessions"]


@needs_tts
def test_tiny_audio_is_speech_not_silence(tiny):
    out, _ = tiny
    m = read_manifest(out / "test.tsv")
    wav, _ = sf.read(m.resolve(0), dtype="float32")
    assert 0.001 < np.sqrt(np.mean(wav**2)) < 0.5
    assert voices.active_ratio(wav) > 0.3


@needs_tts
@pytest.mark.parametrize("part", ["test", "dev"])
def test_tiny_trials_name_existing_files_and_are_balanced(tiny, part):
    out, _ = tiny
    test_ids = {r.utterance: r for r in read_manifest(out / f"{part}.tsv").rows}
    prefix = "" if part == "test" else "dev_"
    for name in ("cross_session", "same_session"):
        trials = read_trials(out / "trials" / f"{prefix}{name}.txt")
        labels = [t[0] for t in trials]
        assert sum(labels) == len(labels) - sum(labels) > 0
        for label, a, b in trials:
            assert (out / "wav" / a).is_file() and (out / "wav" / b).is_file()
            ra, rb = test_ids[a], test_ids[b]
            assert label == (ra.speaker == rb.speaker)
            if label:
                assert (ra.session == rb.session) == (name == "same_session")


@needs_tts
def test_tiny_is_deterministic_and_resumable(tiny, tmp_path):
    out, summary = tiny
    other = synth_corpus(tmp_path / "again", "tiny", seed=3, workers=1, progress=False)
    assert other["manifest_sha256"] == summary["manifest_sha256"]
    first = read_manifest(out / "train.tsv").rows[0].path
    a = sf.read(out / first)[0]
    b = sf.read(tmp_path / "again" / first)[0]
    assert np.array_equal(a, b)
    before = {p: p.stat().st_mtime_ns for p in (out / "wav").rglob("*.flac")}
    rerun = synth_corpus(out, "tiny", seed=3, workers=2, progress=False)
    assert rerun["files_written"] == 0 and rerun["manifest_sha256"] == summary["manifest_sha256"]
    assert before == {p: p.stat().st_mtime_ns for p in (out / "wav").rglob("*.flac")}
    # A deleted file is regenerated identically.
    (out / first).unlink()
    assert synth_corpus(out, "tiny", seed=3, workers=1, progress=False)["files_written"] == 1
    assert np.array_equal(a, sf.read(out / first)[0])


@needs_tts
def test_stats_on_tiny(tiny):
    out, _ = tiny
    result = corpus_stats(out)
    assert 0 <= result["eer_cross_session"] <= 1 and 0 <= result["eer_same_session"] <= 1
    assert 0 <= result["nn_same_session"] <= 1
    assert json.loads((out / "stats.json").read_text())["utterances"] == result["utterances"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"preset": "huge"}, "--preset 'huge'"),
        ({"channels": "loud"}, "--channels 'loud'"),
        ({"workers": 0}, "--workers"),
    ],
)
def test_bad_options_fail_before_writing(tmp_path, kwargs, match):
    with pytest.raises(SSPSError, match=match):
        synth_corpus(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_preset_in_one_line(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "out"), "--preset", "huge", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected one of tiny, default, large" in err


@needs_tts
def test_unwritable_out_fails_without_manifest(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SSPSError, match="not a writable folder"):
        synth_corpus(blocker / "out", "tiny", progress=False)


@needs_tts
def test_missing_voice_names_the_package(tmp_path):
    with pytest.raises(SSPSError, match="apt-get install mbrola-zz9"):
        synth_corpus(tmp_path / "out", "tiny", voices=["us1", "zz9"], progress=False)
    assert not (tmp_path / "out" / "train.tsv").exists()


def test_missing_tools_say_what_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SSPSError, match="espeak-ng and mbrola not found: install"):
        voices.check_tools()


@needs_tts
def test_voices_once_per_database_with_english_mapping():
    installed = voices.installed_voices()
    assert len(installed) == len({v.database for v in installed.values()})
    if "de1" in installed:
        assert installed["de1"].espeak_voice == "mb-de1-en"


@needs_tts
def test_sibling_controls_change_the_voice():
    v = voices.find_voice("us2")
    text = sentences()[0]
    base = voices.synthesize(voices.Identity("us2", v), text)
    slow = voices.synthesize(voices.Identity("x", v, tempo=0.8), text)
    assert len(slow) > 1.15 * len(base)  # tempo 0.8 = durations / 0.8
    assert np.array_equal(base, voices.synthesize(voices.Identity("us2", v), text))
    high = voices.synthesize(voices.Identity("y", v, pitch=1.5, formant=1.2), text)
    # Pitch and formants up: more energy in the upper band, relative to the total.
    assert _high_band_share(high) > _high_band_share(base)


def _high_band_share(wav):
    spec = np.abs(np.fft.rfft(wav)) ** 2
    freqs = np.fft.rfftfreq(len(wav), 1 / 16000)
    return spec[freqs > 1500].sum() / spec.sum()


def test_active_ratio_separates_speechlike_from_silence():
    rng = np.random.default_rng(0)
    silence = np.zeros(16000, np.float32) + 1e-5 * rng.standard_normal(16000).astype(np.float32)
    bursts = np.zeros(16000, np.float32)
    bursts[:12000] = 0.1 * rng.standard_normal(12000)
    assert voices.active_ratio(silence) == 0.0
    assert 0.7 < voices.active_ratio(bursts) < 0.8


def test_sentences_are_many_unique_and_fixed():
    s = sentences()
    assert len(s) == 400 and len(set(s)) == 400 and s == sentences()
    assert all(t.endswith(".") or t.endswith("?") for t in s)


def test_conditions_are_deterministic_and_record():
    a, b = draw_condition(np.random.default_rng(1), "hard"), draw_condition(np.random.default_rng(1), "hard")
    assert a == b and a.kind == f"{a.noise}-{a.codec}"
    mild = [draw_condition(np.random.default_rng(s), "mild") for s in range(50)]
    hard = [draw_condition(np.random.default_rng(s), "hard") for s in range(50)]
    assert np.mean([c.snr for c in hard]) < np.mean([c.snr for c in mild])
    clean = (0.1 * np.sin(np.arange(8000) * 0.05)).astype(np.float32)
    cond = draw_condition(np.random.default_rng(2), "mild")
    x = apply_condition(clean, cond, cond.build(), np.random.default_rng(0), codec=False)
    assert x.shape == clean.shape and 20 * np.log10(np.sqrt(np.mean(x**2))) == pytest.approx(
        cond.level, abs=0.1
    )
    for kind in NOISE_TYPES:
        n = noise(kind, 4000, np.random.default_rng(0))
        assert n.shape == (4000,) and np.sqrt(np.mean(n**2)) == pytest.approx(1.0, rel=1e-3)


def test_crude_embedding_shape():
    assert crude_embedding(np.zeros(100, np.float32)).shape == (80,)


def _rows(speakers, sessions=2, utterances=3):
    return [
        Utterance(f"{s}/sess{t}/u{u}.flac", f"wav/{s}/sess{t}/u{u}.flac", s, f"sess{t}", 2.0)
        for s in speakers
        for t in range(sessions)
        for u in range(utterances)
    ]


def test_make_trials_balances_and_tags_siblings():
    speakers = ["a", "a-s1", "b", "b-s1", "c", "d"]
    rows = _rows(speakers)
    kinds = {(s, f"sess{t}"): ("pink-none" if t == 0 else "white-gsm") for s in speakers for t in range(2)}
    bases = {s: s.split("-")[0] for s in speakers}
    out = make_trials(rows, kinds, bases, np.random.default_rng(0), max_targets=40)
    cross, no_sib = out["lists"]["cross_session"], out["lists"]["cross_session_no_siblings"]
    counts = out["counts"]["cross_session"]
    assert (
        counts["target"] == 40 and counts["sibling"] == 10 and counts["hard"] == 15 and counts["random"] == 15
    )
    assert sum(t[0] for t in cross) == 40 and len(cross) == 80
    base_of = lambda utt: bases[utt.split("/")[0]]  # noqa: E731
    assert len(no_sib) == 70 and not any(t[0] == 0 and base_of(t[1]) == base_of(t[2]) for t in no_sib)
    assert len({(a, b) for _, a, b in cross}) == len(cross)  # no duplicate pairs
    for label, a, b in out["lists"]["same_session"]:
        if label:
            assert a.split("/")[:2] == b.split("/")[:2]
    hard = [t for t in cross if t[0] == 0 and bases[t[1].split("/")[0]] != bases[t[2].split("/")[0]]]
    same_kind = sum(kinds[tuple(a.split("/")[:2])] == kinds[tuple(b.split("/")[:2])] for _, a, b in hard)
    assert same_kind >= 15
    again = make_trials(rows, kinds, bases, np.random.default_rng(0), max_targets=40)
    assert again == out


def test_make_trials_without_siblings_has_no_sibling_list():
    rows = _rows(["a", "b", "c"])
    kinds = {(s, f"sess{t}"): "pink-none" for s in "abc" for t in range(2)}
    out = make_trials(rows, kinds, {s: s for s in "abc"}, np.random.default_rng(0), max_targets=1000)
    assert set(out["lists"]) == {"cross_session", "same_session"}
    assert out["counts"]["cross_session"]["target"] == 3 * 9  # all cross-session pairs of each speaker


@needs_tts
def test_out_with_another_corpus_is_refused(tiny):
    out, _ = tiny
    with pytest.raises(SSPSError, match="holds a corpus made with"):
        synth_corpus(out, "tiny", seed=4, progress=False)


def test_stats_names_a_folder_that_is_not_a_corpus(tmp_path):
    with pytest.raises(SSPSError, match="train.tsv: not found"):
        corpus_stats(tmp_path)
