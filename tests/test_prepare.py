"""``ssps data prepare``: fake VoxCeleb / CSV / Kaldi / MUSAN / RIR trees made of numpy wav files."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssps.data import prepare, voxceleb
from ssps.data.manifest import read_manifest
from ssps.errors import SSPSError

RATE = 16000


def main(argv: list[str]) -> int:
    """``ssps data prepare ...`` as ssps.cli.main runs it (SSPSError -> exit 2), with only this module."""
    parser = argparse.ArgumentParser()
    prepare.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SSPSError:
        return 2


def _wav(path: Path, seconds: float, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * RATE)).astype(np.float32)
    sf.write(str(path), wav, RATE)
    return path


def _voxceleb(root: Path) -> list[str]:
    """Two speakers, two videos each, under root/wav; returns the utterance ids."""
    utts = []
    for s, speaker in enumerate(("id10001", "id10002")):
        for v, video in enumerate(("vidA", "vidB")):
            for n in range(2):
                utt = f"{speaker}/{video}/{n:05d}.wav"
                _wav(root / "wav" / utt, 0.5 + 0.25 * n, seed=s * 10 + v * 2 + n)
                utts.append(utt)
    return utts


def _trials(path: Path, pairs: list[tuple[int, str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{label} {a} {b}\n" for label, a, b in pairs))
    return path


def test_voxceleb_manifest_and_trials(tmp_path, capsys):
    root = tmp_path / "vox1"
    utts = _voxceleb(root)
    _trials(root / "veri_test2.txt", [(1, utts[0], utts[1]), (0, utts[0], utts[4]), (1, utts[4], utts[6])])
    _trials(root / "meta" / "list_test_hard2.txt", [(0, utts[2], utts[7])])
    (root / "wav" / "id10001" / "vidA" / "notes.txt").write_text("not audio")
    out = tmp_path / "prepared"
    assert main(["prepare", "voxceleb", str(root), "--out", str(out)]) == 0
    m = read_manifest(out / "manifest.tsv")
    assert [r.utterance for r in m.rows] == sorted(utts)
    assert {r.speaker for r in m.rows} == {"id10001", "id10002"}
    row = m.rows[m.index()["id10002/vidB/00001.wav"]]
    assert (row.speaker, row.session, row.duration) == ("id10002", "vidB", 0.75)
    assert m.resolve(0).resolve() == (root / "wav" / m.rows[0].utterance).resolve()
    printed = capsys.readouterr().out
    assert "2 speakers, 4 sessions, 8 utterances" in printed
    for name, count in (("veri_test2.txt", 3), ("list_test_hard2.txt", 1)):
        copy = out / "trials" / name
        digest = hashlib.sha256(copy.read_bytes()).hexdigest()
        assert f"trials {copy} " in printed and f"{count} trials, sha256 {digest}" in printed


def test_voxceleb_paths_relative_when_audio_under_out(tmp_path):
    _voxceleb(tmp_path / "vox")
    rows, trials = voxceleb.prepare_voxceleb(tmp_path / "vox", tmp_path, jobs=2)
    assert trials == []
    assert rows[0].path == "vox/wav/id10001/vidA/00000.wav"


def test_voxceleb_rerun_with_out_under_root(tmp_path):
    root = tmp_path / "vox"
    utts = _voxceleb(root)
    _trials(root / "veri_test2.txt", [(1, utts[0], utts[1])])
    for _ in range(2):  # the second run must not take the first run's copy for a second trial list
        _, trials = voxceleb.prepare_voxceleb(root, root / "prepared")
        assert [(t.name, t.trials) for t in trials] == [("veri_test2.txt", 1)]
    _trials(root / "meta" / "veri_test2.txt", [(1, utts[0], utts[1])])
    with pytest.raises(SSPSError, match="veri_test2.txt found more than once"):
        voxceleb.prepare_voxceleb(root, root / "prepared")


def test_voxceleb_prefers_wav_over_m4a_with_same_stem(tmp_path):
    _voxceleb(tmp_path / "vox")
    (tmp_path / "vox" / "wav" / "id10001" / "vidA" / "00000.m4a").write_bytes(b"not decoded")
    rows, _ = voxceleb.prepare_voxceleb(tmp_path / "vox", tmp_path / "out", jobs=1)
    assert not any(r.utterance.endswith(".m4a") for r in rows)


def test_voxceleb_trial_naming_unknown_utterance(tmp_path):
    root = tmp_path / "vox"
    utts = _voxceleb(root)
    _trials(root / "veri_test.txt", [(1, utts[0], utts[1]), (0, utts[0], "id10999/x/00001.wav")])
    unknown = r"veri_test.txt: trial 2 names utterance 'id10999/x/00001.wav', which is not in the manifest"
    with pytest.raises(SSPSError, match=unknown):
        voxceleb.prepare_voxceleb(root, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.tsv").exists()
    assert not (tmp_path / "out" / "trials").exists()


def test_voxceleb_corrupt_audio_leaves_old_manifest(tmp_path):
    root = tmp_path / "vox"
    _voxceleb(root)
    out = tmp_path / "out"
    voxceleb.prepare_voxceleb(root, out)
    before = (out / "manifest.tsv").read_text()
    (root / "wav" / "id10002" / "vidB" / "00009.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(SSPSError, match="00009.wav"):
        voxceleb.prepare_voxceleb(root, out)
    assert (out / "manifest.tsv").read_text() == before
    assert sorted(p.name for p in out.iterdir()) == ["manifest.tsv"]  # no temporary left over


def test_m4a_needs_ffprobe(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare.shutil, "which", lambda name: None)
    with pytest.raises(SSPSError, match=r"ffmpeg -i IN\.m4a -ac 1 -ar 16000 OUT\.wav"):
        prepare._duration(tmp_path / "a.m4a")


@pytest.mark.requires("ffmpeg", "ffprobe")
def test_m4a_duration_from_ffprobe(tmp_path):
    m4a = tmp_path / "vox" / "aac" / "id00012" / "v1" / "00001.m4a"
    m4a.parent.mkdir(parents=True)
    cmd = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1.5", "-c:a", "aac", str(m4a)]
    subprocess.run(cmd, check=True)
    rows, _ = voxceleb.prepare_voxceleb(tmp_path / "vox", tmp_path / "out", convert=False)
    assert rows[0].utterance == "id00012/v1/00001.m4a"
    assert rows[0].duration == pytest.approx(1.5, abs=0.05)


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(SSPSError, match="not found"):
        voxceleb.prepare_voxceleb(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty" / "id10001").mkdir(parents=True)
    with pytest.raises(SSPSError, match="no audio found"):
        voxceleb.prepare_voxceleb(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(SSPSError, match="not found"):
        prepare.prepare_musan(tmp_path / "nope", tmp_path / "m.tsv")
    assert main(["prepare", "rir", str(tmp_path / "empty"), "--out", str(tmp_path / "r.tsv")]) == 2


def test_unwritable_out_leaves_nothing(tmp_path):
    _voxceleb(tmp_path / "vox")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(SSPSError, match="cannot write"):
        voxceleb.prepare_voxceleb(tmp_path / "vox", blocker / "out")
    with pytest.raises(SSPSError, match="cannot write the manifest"):
        prepare.prepare_csv(_csv(tmp_path, session=False), blocker / "m.tsv")
    assert blocker.read_text() == "a file, not a folder"


def _csv(tmp_path: Path, session: bool) -> Path:
    _wav(tmp_path / "audio" / "a.wav", 1.0)
    _wav(tmp_path / "audio" / "b.flac", 0.5)
    abs_path = _wav(tmp_path / "elsewhere" / "c.wav", 0.25)
    header = "path,speaker,session" if session else "path,speaker"
    lines = [f"audio/a.wav,spk1{',s1' if session else ''}", f"audio/b.flac,spk2{',s2' if session else ''}"]
    lines.append(f"{abs_path},spk1{',s3' if session else ''}")
    path = tmp_path / "list.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8-sig")  # with a BOM, as Excel writes
    return path


@pytest.mark.parametrize("session", [True, False])
def test_csv(tmp_path, session):
    out = tmp_path / "out" / "m.tsv"
    rows = prepare.prepare_csv(_csv(tmp_path, session), out)
    m = read_manifest(out)
    assert [r.utterance for r in m.rows][:2] == ["audio/a.wav", "audio/b.flac"]
    assert [r.speaker for r in m.rows] == ["spk1", "spk2", "spk1"]
    assert [r.session for r in m.rows] == (["s1", "s2", "s3"] if session else ["", "", ""])
    assert [r.duration for r in m.rows] == [1.0, 0.5, 0.25]
    assert all(m.resolve(i).is_file() for i in range(len(m)))
    assert prepare.summarize(rows).startswith("2 speakers")


def test_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,speaker\na.wav,s\n")
    with pytest.raises(SSPSError, match=r"bad.csv: no 'path' column \(columns: file, speaker\)"):
        prepare.prepare_csv(bad, tmp_path / "m.tsv")
    bad.write_text("path,speaker\nmissing.wav,s\n")
    with pytest.raises(SSPSError, match=r"bad.csv:2: audio file .*missing.wav not found"):
        prepare.prepare_csv(bad, tmp_path / "m.tsv")
    assert not (tmp_path / "m.tsv").exists()


def test_kaldi(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = _wav(tmp_path / "wavs" / "a.wav", 1.0), _wav(tmp_path / "wavs" / "b.wav", 0.5)
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text(f"utt-a {a}\nutt-b wavs/b.wav\n")
    (data / "utt2spk").write_text("utt-a spk1\nutt-b spk2\n")
    rows = prepare.prepare_kaldi(data, tmp_path / "m.tsv")
    assert [(r.utterance, r.path, r.speaker, r.session, r.duration) for r in rows] == [
        ("utt-a", "wavs/a.wav", "spk1", "", 1.0),
        ("utt-b", "wavs/b.wav", "spk2", "", 0.5),
    ]
    (data / "utt2sess").write_text("utt-a s1\nutt-b s2\n")
    assert [r.session for r in prepare.prepare_kaldi(data, tmp_path / "m.tsv")] == ["s1", "s2"]
    (data / "utt2spk").write_text("utt-a spk1\n")
    with pytest.raises(SSPSError, match="utt2spk: no entry for utterance 'utt-b'"):
        prepare.prepare_kaldi(data, tmp_path / "m.tsv")
    (data / "wav.scp").write_text(f"utt-a {a}\nutt-b sox {b} -t wav - |\n")
    with pytest.raises(SSPSError, match="'utt-b'.*command"):
        prepare.prepare_kaldi(data, tmp_path / "m2.tsv")
    (data / "segments").write_text("seg1 utt-a 0.0 0.5\n")
    with pytest.raises(SSPSError, match="segments are not supported"):
        prepare.prepare_kaldi(data, tmp_path / "m2.tsv")
    assert not (tmp_path / "m2.tsv").exists()


def test_musan(tmp_path, capsys):
    root = tmp_path / "musan"
    _wav(root / "speech" / "librivox" / "speech-librivox-0000.wav", 1.0)
    _wav(root / "noise" / "free-sound" / "noise-free-sound-0000.wav", 0.5)
    _wav(root / "noise" / "sound-bible" / "noise-sound-bible-0000.wav", 0.5)
    _wav(root / "music" / "fma" / "music-fma-0000.wav", 2.0)
    _wav(root / "README.wav", 0.1)  # outside the categories: ignored
    assert main(["prepare", "musan", str(root), "--out", str(tmp_path / "noise.tsv")]) == 0
    assert (
        "4 files (music 1 files 0.00 h, noise 2 files 0.00 h, speech 1 files 0.00 h)"
        in capsys.readouterr().out
    )
    rows = prepare.prepare_musan(root, tmp_path / "noise.tsv")
    cats = {r.utterance: (r.speaker, r.session) for r in rows}
    assert cats == {
        "music/fma/music-fma-0000.wav": ("music", "fma"),
        "noise/free-sound/noise-free-sound-0000.wav": ("noise", "free-sound"),
        "noise/sound-bible/noise-sound-bible-0000.wav": ("noise", "sound-bible"),
        "speech/librivox/speech-librivox-0000.wav": ("speech", "librivox"),
    }
    assert read_manifest(tmp_path / "noise.tsv").rows == rows


def test_rir(tmp_path):
    root = tmp_path / "RIRS_NOISES"
    _wav(root / "simulated_rirs" / "smallroom" / "Room001" / "Room001-00001.wav", 0.3)
    _wav(root / "simulated_rirs" / "largeroom" / "Room002" / "Room002-00001.wav", 0.3)
    _wav(root / "real_rirs_isotropic_noises" / "air_type1_noise_1.wav", 0.3)
    rows = prepare.prepare_rir(root / "simulated_rirs", tmp_path / "rir.tsv")
    assert [(r.speaker, r.session) for r in rows] == [("largeroom", "Room002"), ("smallroom", "Room001")]
    rows = prepare.prepare_rir(root, tmp_path / "rir.tsv")
    assert len(rows) == 2  # the noise file is skipped
