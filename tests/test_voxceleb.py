"""VoxCeleb2-style preparation: .m4a -> wav with ffmpeg, in parallel, resumable, atomic per file, bad
files listed and left out. Needs ffmpeg (skipped without it, except under CI=true where it must exist)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from ssps.data import prepare, voxceleb
from ssps.data.manifest import read_manifest

if shutil.which("ffmpeg") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("ffmpeg is required under CI=true (tests/test_voxceleb.py)")
    pytest.skip("ffmpeg not installed", allow_module_level=True)


def _m4a(path: Path, seconds: float, freq: int = 440) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"sine=f={freq}:d={seconds}:r=44100"]
    subprocess.run([*cmd, "-ac", "2", "-c:a", "aac", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def vox2(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vox2") / "dev" / "aac"
    for s, speaker in enumerate(("id00012", "id00015")):
        for video in ("vidA", "vidB"):
            for n in range(2):
                _m4a(root / speaker / video / f"{n + 1:05d}.m4a", 0.6 + 0.2 * n, 300 + 100 * s)
    (root / "id00015" / "vidB" / "00009.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A not really aac")
    return root.parent.parent


def test_m4a_converted_in_parallel_and_bad_files_listed(vox2, tmp_path):
    out = tmp_path / "prepared"
    rows, _ = voxceleb.prepare_voxceleb(vox2, out, workers=3)
    assert len(rows) == 8 and all(r.utterance.endswith(".wav") for r in rows)
    m = read_manifest(out / "manifest.tsv")
    first = m.resolve(0)
    assert first == out / "wav" / "id00012" / "vidA" / "00001.wav" and m.rows[0].session == "vidA"
    info = sf.info(str(first))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert m.rows[0].duration == pytest.approx(0.6, abs=0.05)
    bad = (out / voxceleb.BAD_FILES).read_text().splitlines()
    assert bad[0] == "path\treason" and len(bad) == 2 and bad[1].split("\t")[0].endswith("00009.m4a")
    assert not list(out.rglob("*.tmp")) and not (out / "wav" / "id00015" / "vidB" / "00009.wav").exists()


def test_rerun_skips_converted_files_and_redoes_a_killed_one(vox2, tmp_path, monkeypatch):
    out = tmp_path / "prepared"
    voxceleb.prepare_voxceleb(vox2, out, workers=2)
    done = out / "wav" / "id00012" / "vidB" / "00002.wav"
    done.unlink()  # as if the run had been killed before this file's rename
    (done.parent / f".{done.name}.abc.tmp").write_bytes(b"half")  # the killed run's temporary
    calls = []
    real = voxceleb._ffmpeg_to_wav
    monkeypatch.setattr(voxceleb, "_ffmpeg_to_wav", lambda *a: calls.append(a[1].name) or real(*a))
    rows, _ = voxceleb.prepare_voxceleb(vox2, out, workers=2)
    assert sorted(calls) == ["00002.m4a", "00009.m4a"]  # the missing one and the bad one (retried)
    assert len(rows) == 8 and done.is_file()


def test_no_convert_reads_m4a_headers_and_stops_at_a_bad_one(vox2, tmp_path):
    from ssps.errors import SSPSError

    with pytest.raises(SSPSError, match="00009.m4a: ffprobe cannot read it"):  # the pre-conversion behaviour
        voxceleb.prepare_voxceleb(vox2, tmp_path / "out", convert=False, jobs=2)
    assert not (tmp_path / "out").exists()


def test_cli_converts_with_workers(vox2, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    prepare.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["prepare", "voxceleb", str(vox2), "--out", str(tmp_path / "o"), "--workers", "2"]
    )
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "2 speakers, 4 sessions, 8 utterances" in text
    assert "1 file(s) could not be converted and are left out" in text
