"""``ssps data prepare {voxceleb,csv,kaldi,musan,rir}``: real corpora -> manifests (and trial lists).

Every preparation reads each file's duration from its header, checks everything first and then writes
atomically, so a failure never leaves a half-written manifest. Manifest paths are relative to the
manifest's folder when the audio lies under it, absolute otherwise.

- voxceleb: VoxCeleb1/2 (:mod:`ssps.data.voxceleb`: speaker folders, trial lists, the parallel, resumable
  ``.m4a`` -> wav conversion of VoxCeleb2).

- csv: columns ``path`` (required), ``speaker``, ``session``, ``utterance`` (optional; default: the path
  as written). Comma- or tab-separated; relative paths resolve against the CSV's folder.
- kaldi: ``wav.scp`` (plain ``utt path`` lines), optional ``utt2spk`` and ``utt2sess``; utterance id =
  Kaldi's. Relative paths resolve against the current directory, as in Kaldi recipes.
- musan / rir: noise manifests in the same format, ``speaker`` = category (MUSAN: speech | noise |
  music; RIR: the first folder under ROOT, e.g. ``smallroom``), ``session`` = the folder holding the file.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ssps.audio.io import audio_duration
from ssps.data.manifest import Utterance, write_manifest
from ssps.errors import SSPSError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".m4a")  # in order of preference when two share a stem
FFPROBE_SUFFIXES = (".m4a",)  # AAC: libsndfile cannot read it
MUSAN_CATEGORIES = ("speech", "noise", "music")


@dataclass(frozen=True)
class _Item:
    """A manifest row before its duration is read."""

    utterance: str
    file: Path
    speaker: str = ""
    session: str = ""


def _check_dir(root: Path, what: str) -> Path:
    if not root.is_dir():
        raise SSPSError(f"{root}: {what} folder not found")
    return root


def _audio_files(root: Path) -> list[Path]:
    """Audio files under ``root`` (symlinks followed), sorted; of two sharing a stem, the preferred one."""
    best: dict[Path, Path] = {}
    rank = {s: i for i, s in enumerate(AUDIO_SUFFIXES)}
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs.sort()
        for name in names:
            p = Path(folder, name)
            suffix = p.suffix.lower()
            if suffix in rank and not name.startswith("."):
                stem = p.with_suffix("")
                if stem not in best or rank[suffix] < rank[best[stem].suffix.lower()]:
                    best[stem] = p
    return sorted(best.values())


def _ffprobe_duration(path: Path) -> float:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        raise SSPSError(
            f"{path}: cannot read {path.suffix} without ffprobe; install ffmpeg or convert to wav: "
            f"ffmpeg -i IN{path.suffix} -ac 1 -ar 16000 OUT.wav (see `ssps data prepare voxceleb -h`)"
        )
    cmd = [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    try:
        return float(done.stdout.strip())
    except ValueError:
        message = (done.stderr.strip().splitlines() or ["no duration"])[-1]
        raise SSPSError(f"{path}: ffprobe cannot read it ({message})") from None


def _duration(path: Path) -> float:
    if path.suffix.lower() in FFPROBE_SUFFIXES:
        return _ffprobe_duration(path)
    return audio_duration(path)


def _rows(items: list[_Item], manifest: Path, jobs: int) -> list[Utterance]:
    """Read every duration (threads: header reads and ffprobe calls wait on I/O) and build the rows."""
    seen: dict[str, Path] = {}
    for item in items:
        if item.utterance in seen:
            raise SSPSError(f"{item.file}: utterance id {item.utterance!r} also names {seen[item.utterance]}")
        seen[item.utterance] = item.file
    pool = ThreadPoolExecutor(max(1, jobs))
    try:
        durations = list(pool.map(_duration, [item.file for item in items]))
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, do not read the remaining headers
    folder = Path(os.path.abspath(manifest.parent))
    rows = []
    for item, duration in zip(items, durations, strict=True):
        file = Path(os.path.abspath(item.file))
        path = file.relative_to(folder).as_posix() if file.is_relative_to(folder) else str(file)
        rows.append(Utterance(item.utterance, path, item.speaker, item.session, duration))
    return rows


def _finish(items: list[_Item], out: Path, jobs: int, empty: str) -> list[Utterance]:
    """Read the durations and write the manifest; ``empty`` is the error when there is nothing to write."""
    if not items:
        raise SSPSError(empty)
    rows = _rows(items, out, jobs)
    _write(out, rows)
    return rows


def _write(out: Path, rows: list[Utterance]) -> None:
    try:
        write_manifest(out, rows)
    except OSError as e:
        raise SSPSError(f"{out}: cannot write the manifest ({e.strerror or e})") from None


def summarize(rows: list[Utterance]) -> str:
    """One line: speakers, sessions, utterances, hours."""
    speakers = {r.speaker for r in rows if r.speaker}
    sessions = {(r.speaker, r.session) for r in rows if r.session}
    hours = sum(r.duration for r in rows) / 3600
    return f"{len(speakers)} speakers, {len(sessions)} sessions, {len(rows)} utterances, {hours:.2f} hours"


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    if not path.is_file():
        raise SSPSError(f"{path}: file not found")
    lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: spreadsheets write a BOM
    delimiter = "\t" if lines and "\t" in lines[0] else ","
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    records = []
    for n, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise SSPSError(
                f"{path}:{n}: expected {len(header)} fields ({', '.join(header)}), got {len(fields)}"
            )
        records.append((n, {h: f.strip() for h, f in zip(header, fields, strict=True)}))
    return header, records


def prepare_csv(csv_path: str | Path, out: str | Path, jobs: int = 8) -> list[Utterance]:
    """Write a manifest from a CSV with columns path, [speaker], [session], [utterance]."""
    csv_path, out = Path(csv_path), Path(out)
    header, records = _read_table(csv_path)
    if "path" not in header:
        raise SSPSError(f"{csv_path}: no 'path' column (columns: {', '.join(header) or 'none'})")
    items = []
    for n, rec in records:
        if not rec["path"]:
            raise SSPSError(f"{csv_path}:{n}: empty path")
        file = Path(rec["path"])
        file = file if file.is_absolute() else csv_path.parent / file
        if not file.is_file():
            raise SSPSError(f"{csv_path}:{n}: audio file {file} not found")
        utt = rec.get("utterance") or Path(rec["path"]).as_posix()
        items.append(_Item(utt, file, rec.get("speaker", ""), rec.get("session", "")))
    return _finish(items, out, jobs, f"{csv_path}: no rows")


def _read_kaldi_map(path: Path) -> dict[str, str]:
    table = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split(maxsplit=1)
        if not fields:
            continue
        if len(fields) != 2:
            raise SSPSError(f"{path}:{n}: expected 'utterance value', got {line!r}")
        if fields[0] in table:
            raise SSPSError(f"{path}:{n}: duplicate utterance {fields[0]!r}")
        table[fields[0]] = fields[1].strip()
    return table


def prepare_kaldi(data_dir: str | Path, out: str | Path, jobs: int = 8) -> list[Utterance]:
    """Write a manifest from a Kaldi data folder (wav.scp, utt2spk, utt2sess)."""
    data_dir, out = _check_dir(Path(data_dir), "Kaldi data"), Path(out)
    if (data_dir / "segments").exists():
        raise SSPSError(
            f"{data_dir / 'segments'}: segments are not supported; cut the segments into files first"
        )
    scp = data_dir / "wav.scp"
    if not scp.is_file():
        raise SSPSError(f"{scp}: not found (a Kaldi data folder needs wav.scp)")
    wavs = _read_kaldi_map(scp)
    extra = {
        name: _read_kaldi_map(data_dir / name)
        for name in ("utt2spk", "utt2sess")
        if (data_dir / name).is_file()
    }
    items = []
    for utt, value in wavs.items():
        if value.endswith("|") or " " in value or value.startswith("ark:") or re.search(r"\.ark:\d+$", value):
            raise SSPSError(
                f"{scp}: utterance {utt!r}: {value!r} is a command or an archive; "
                "only plain 'utterance path' lines are supported (write the audio to files first)"
            )
        file = Path(value) if Path(value).is_absolute() else Path.cwd() / value
        if not file.is_file():
            raise SSPSError(f"{scp}: utterance {utt!r}: audio file {file} not found")
        labels = {}
        for name, table in extra.items():
            if utt not in table:
                raise SSPSError(f"{data_dir / name}: no entry for utterance {utt!r} of wav.scp")
            labels[name] = table[utt]
        items.append(_Item(utt, file, labels.get("utt2spk", ""), labels.get("utt2sess", "")))
    return _finish(items, out, jobs, f"{scp}: no utterances")


def _prepare_noise(root: Path, out: Path, jobs: int, category_of, what: str) -> list[Utterance]:
    root = _check_dir(root, what)
    items = []
    for file in _audio_files(root):
        rel = file.relative_to(root)
        category = category_of(rel)
        if category:
            items.append(_Item(rel.as_posix(), file, category, rel.parent.name))
    return _finish(items, out, jobs, f"{root}: no {what} audio found")


def prepare_musan(root: str | Path, out: str | Path, jobs: int = 8) -> list[Utterance]:
    """MUSAN noise manifest: speaker = category (speech | noise | music), from the first matching folder."""

    def category(rel: Path) -> str:
        return next((p for p in rel.parts[:-1] if p in MUSAN_CATEGORIES), "")

    return _prepare_noise(Path(root), Path(out), jobs, category, "MUSAN (speech/, noise/, music/)")


def prepare_rir(root: str | Path, out: str | Path, jobs: int = 8) -> list[Utterance]:
    """RIR manifest: speaker = first folder under ROOT; files with 'noise' in their path are skipped."""

    def category(rel: Path) -> str:
        # RIRS_NOISES keeps isotropic and point-source noises beside the RIRs.
        return "" if "noise" in rel.as_posix().lower() else (rel.parts[0] if len(rel.parts) > 1 else "rir")

    return _prepare_noise(Path(root), Path(out), jobs, category, "RIR")


def _command(args: argparse.Namespace) -> int:
    if args.corpus == "voxceleb":
        from ssps.data import voxceleb

        return voxceleb.command(args)
    prepare = {"csv": prepare_csv, "kaldi": prepare_kaldi, "musan": prepare_musan, "rir": prepare_rir}
    rows = prepare[args.corpus](args.source, args.out, args.jobs)
    if args.corpus in ("musan", "rir"):  # the speaker column holds categories
        hours = {
            c: sum(r.duration for r in rows if r.speaker == c) / 3600
            for c in sorted({r.speaker for r in rows})
        }
        counts = {c: sum(r.speaker == c for r in rows) for c in hours}
        per = ", ".join(f"{c} {counts[c]} files {h:.2f} h" for c, h in hours.items())
        print(f"wrote {args.out}: {len(rows)} files ({per})")
    else:
        print(f"wrote {args.out}: {summarize(rows)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prepare", help="write a manifest (and trial lists) for a real corpus")
    corpora = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    helps = {
        "voxceleb": (
            "ROOT",
            "DIR",
            "VoxCeleb1/2: DIR/manifest.tsv and DIR/trials/ (m4a: converted to DIR/wav/ with ffmpeg)",
        ),
        "csv": ("FILE", "MANIFEST", "a CSV with columns path, [speaker], [session], [utterance]"),
        "kaldi": ("DIR", "MANIFEST", "a Kaldi data folder: wav.scp, [utt2spk], [utt2sess]"),
        "musan": ("ROOT", "MANIFEST", "MUSAN noises; speaker column = speech | noise | music"),
        "rir": ("ROOT", "MANIFEST", "room impulse responses (e.g. RIRS_NOISES/simulated_rirs)"),
    }
    for corpus, (source, out, text) in helps.items():
        p = corpora.add_parser(
            corpus, help=text, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
        )
        p.add_argument("source", metavar=source)
        p.add_argument("--out", required=True, metavar=out)
        p.add_argument("--jobs", type=int, default=8, help="threads reading audio headers (default 8)")
        if corpus == "voxceleb":
            from ssps.data.voxceleb import add_arguments

            add_arguments(p)
        p.set_defaults(func=_command)
