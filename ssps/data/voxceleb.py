"""``ssps data prepare voxceleb ROOT --out DIR``: VoxCeleb1/2 -> ``DIR/manifest.tsv`` and ``DIR/trials/``.

Speaker folders ``id\\d+`` anywhere under ROOT, laid out ``<speaker>/<video>/<n>.<ext>`` (VoxCeleb1
``wav/``, VoxCeleb2 ``dev/aac/``). Utterance id ``<speaker>/<video>/<n>.<ext>``, session = video. Trial
lists found under ROOT by name are checked against the manifest and copied to ``DIR/trials/``.

VoxCeleb2 ships AAC (``.m4a``), which libsndfile cannot decode. Each ``.m4a`` (without a ``.wav`` of the
same stem beside it) is converted with ffmpeg to 16 kHz mono 16-bit ``DIR/wav/<speaker>/<video>/<n>.wav``:
``--workers`` ffmpeg processes at a time, with a progress bar; each file is written to a temporary name
and renamed when complete, so a killed run leaves no half file and a rerun skips the files already done.
A file ffmpeg cannot decode is listed in ``DIR/bad_files.tsv`` (path, reason) and left out of the
manifest; it does not stop the run. ``--no-convert`` keeps the ``.m4a`` rows (durations from ffprobe).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ssps.data.manifest import Utterance
from ssps.data.prepare import _audio_files, _check_dir, _Item, _rows, _write, summarize
from ssps.data.trials import read_trials
from ssps.errors import SSPSError
from ssps.utils.files import atomic_path, atomic_write_text, sha256

TRIAL_LISTS = {
    "veri_test.txt": "VoxCeleb1-O",
    "veri_test2.txt": "VoxCeleb1-O cleaned",
    "list_test_all.txt": "VoxCeleb1-E",
    "list_test_all2.txt": "VoxCeleb1-E cleaned",
    "list_test_hard.txt": "VoxCeleb1-H",
    "list_test_hard2.txt": "VoxCeleb1-H cleaned",
}
_SPEAKER_DIR = re.compile(r"id\d+")
SAMPLE_RATE = 16000
BAD_FILES = "bad_files.tsv"


@dataclass(frozen=True)
class TrialList:
    name: str  # file name, e.g. veri_test2.txt
    path: Path  # the copy under DIR/trials/
    trials: int
    sha256: str


def _check_trials(path: Path, known: set[str]) -> int:
    """The number of trials; every utterance they name must be in the manifest."""
    t = read_trials(path)
    for n, pair in enumerate(zip(t.enroll, t.test, strict=True), start=1):
        for utt in pair:
            if utt not in known:
                raise SSPSError(f"{path}: trial {n} names utterance {utt!r}, which is not in the manifest")
    return len(t)


def _ffmpeg_to_wav(ffmpeg: str, src: Path, dst: Path) -> str:
    """Convert one file atomically; '' on success, else ffmpeg's last message line."""
    try:
        with atomic_path(dst) as tmp:
            cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(src)]
            cmd += ["-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav", str(tmp)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0 or tmp.stat().st_size <= 44:  # 44 bytes: a WAV header and no audio
                lines = done.stderr.strip().splitlines() or [f"ffmpeg exit code {done.returncode}, no audio"]
                raise SSPSError(lines[-1].strip()[:300])
    except SSPSError as e:
        return str(e)
    except OSError as e:
        return f"cannot write {dst} ({e.strerror or e})"
    return ""


def convert_m4a(
    items: list[_Item], wav_root: Path, workers: int = 4, progress: bool = True
) -> tuple[list[_Item], list[tuple[Path, str]]]:
    """Replace every ``.m4a`` item by its wav under ``wav_root`` (converted unless already there).

    Returns:
        the items (converted ones pointing at their wav, id ``.../<n>.wav``; failed ones dropped) and the
        failures as (source path, reason).
    """
    jobs = [
        (i, wav_root / Path(item.utterance).with_suffix(".wav"))
        for i, item in enumerate(items)
        if item.file.suffix.lower() == ".m4a"
    ]
    if not jobs:
        return items, []
    todo = [(i, dst) for i, dst in jobs if not dst.is_file()]  # resumable: finished files are complete
    ffmpeg = shutil.which("ffmpeg")
    if todo and ffmpeg is None:
        raise SSPSError(
            f"{items[todo[0][0]].file}: {len(todo)} .m4a files to convert but no ffmpeg on PATH; "
            "install ffmpeg, or pass --no-convert to list them as they are"
        )
    failed: dict[int, str] = {}
    with (
        ThreadPoolExecutor(max(1, workers)) as pool,
        tqdm(
            total=len(jobs),
            initial=len(jobs) - len(todo),
            desc="m4a -> wav",
            unit="file",
            file=sys.stderr,
            disable=not progress,
        ) as bar,
    ):
        results = pool.map(lambda job: _ffmpeg_to_wav(ffmpeg, items[job[0]].file, job[1]), todo)
        for (i, _), error in zip(todo, results, strict=True):
            if error:
                failed[i] = error
            bar.update(1)
    out = list(items)
    for i, dst in jobs:
        item = items[i]
        out[i] = (
            None
            if i in failed
            else _Item(Path(item.utterance).with_suffix(".wav").as_posix(), dst, item.speaker, item.session)
        )
    return [x for x in out if x is not None], sorted((items[i].file, e) for i, e in failed.items())


def _scan(root: Path, out_dir: Path) -> tuple[list[_Item], list[Path]]:
    copies = Path(os.path.abspath(out_dir / "trials"))  # an earlier run's copies, when DIR is under ROOT
    converted = Path(os.path.abspath(out_dir / "wav"))  # and its converted wavs
    items, found = [], []
    for folder, dirs, names in os.walk(root, followlinks=True):
        if Path(os.path.abspath(folder)) == converted:
            dirs[:] = []
            continue
        if Path(os.path.abspath(folder)) != copies:
            found += [Path(folder, n) for n in names if n in TRIAL_LISTS]
        speakers = sorted(d for d in dirs if _SPEAKER_DIR.fullmatch(d))
        dirs[:] = sorted(d for d in dirs if d not in speakers)  # do not look for speakers inside speakers
        for speaker in speakers:
            for file in _audio_files(Path(folder, speaker)):
                rel = file.relative_to(folder)
                session = rel.parts[1] if len(rel.parts) > 2 else ""
                items.append(_Item(rel.as_posix(), file, speaker, session))
    return items, sorted(found)


def prepare_voxceleb(
    root: str | Path,
    out_dir: str | Path,
    jobs: int = 8,
    convert: bool = True,
    workers: int = 4,
    progress: bool = False,
) -> tuple[list[Utterance], list[TrialList]]:
    """Write ``out_dir/manifest.tsv`` and copy the trial lists found under ``root`` to ``out_dir/trials/``.

    ``convert``: ``.m4a`` files become ``out_dir/wav/...wav`` first (``workers`` ffmpeg processes); the
    ones that fail are listed in ``out_dir/bad_files.tsv``.
    """
    root, out_dir = _check_dir(Path(root), "VoxCeleb root"), Path(out_dir)
    items, found = _scan(root, out_dir)
    if not items:
        raise SSPSError(f"{root}: no audio found in speaker folders id<digits>/<video>/ (wav, flac, m4a)")
    bad: list[tuple[Path, str]] = []
    if convert:
        items, bad = convert_m4a(items, out_dir / "wav", workers, progress)
        if bad or (out_dir / BAD_FILES).exists():
            atomic_write_text(out_dir / BAD_FILES, "path\treason\n" + "".join(f"{p}\t{e}\n" for p, e in bad))
        if not items:
            raise SSPSError(f"{root}: no file could be converted (see {out_dir / BAD_FILES})")
    rows = _rows(items, out_dir / "manifest.tsv", jobs)
    known = {r.utterance for r in rows}
    names = [p.name for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SSPSError(f"{root}: trial list {twice[0]} found more than once; keep one copy under ROOT")
    counts = [_check_trials(p, known) for p in found]  # all checked before anything is written
    trials = []
    for src, count in zip(found, counts, strict=True):
        dst = out_dir / "trials" / src.name
        try:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        except OSError as e:
            raise SSPSError(f"{dst}: cannot write the trial list ({e.strerror or e})") from None
        trials.append(TrialList(src.name, dst, count, sha256(dst)))
    _write(out_dir / "manifest.tsv", rows)
    return rows, trials


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=4, help="parallel ffmpeg conversions (default 4)")
    p.add_argument(
        "--no-convert",
        action="store_true",
        help="keep .m4a rows (durations from ffprobe) instead of converting",
    )


def command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    rows, trials = prepare_voxceleb(
        args.source, out, args.jobs, not args.no_convert, args.workers, progress=True
    )
    print(f"wrote {out / 'manifest.tsv'}: {summarize(rows)}")
    bad = out / BAD_FILES
    if not args.no_convert and bad.is_file():
        n = len(bad.read_text().splitlines()) - 1
        if n:
            print(f"{n} file(s) could not be converted and are left out: listed in {bad}")
    for t in trials:
        print(f"trials {t.path} ({TRIAL_LISTS[t.name]}): {t.trials} trials, sha256 {t.sha256}")
    return 0
