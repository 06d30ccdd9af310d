"""Manifests: one row per utterance (utterance, path, speaker, session, duration), tab-separated.

The utterance id is the path relative to the audio root (``<speaker>/<session>/<name>.flac``), which is
also what trial lists name. ``path`` is relative to the manifest's folder unless absolute. ``speaker`` and
``session`` may be empty (unknown); self-supervised training never reads the speaker (diagnostics and the
labelled variants do), and the session is a corpus-wide recording id (a VoxCeleb video).

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> rows = [Utterance("a/s1/1.flac", "wav/a/s1/1.flac", "a", "s1", 2.5)]
>>> write_manifest(os.path.join(d, "m.tsv"), rows)
>>> m = read_manifest(os.path.join(d, "m.tsv"))
>>> m.rows[0].speaker, m.rows[0].duration, m.has_speakers, m.has_sessions
('a', 2.5, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ssps.errors import SSPSError
from ssps.utils.files import atomic_write_text, read_lines

COLUMNS = ("utterance", "path", "speaker", "session", "duration")


class Utterance(NamedTuple):
    """One row. A named tuple: a VoxCeleb2 manifest (1,092,009 rows) is 1 M of them, built in ~1 s
    (a frozen dataclass took 3x longer; benchmarks/bench_manifest.py)."""

    utterance: str
    path: str
    speaker: str = ""
    session: str = ""
    duration: float = 0.0


@dataclass(frozen=True)
class Manifest:
    rows: list[Utterance]
    root: Path  # folder relative paths are resolved against
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def resolve(self, i: int) -> Path:
        p = Path(self.rows[i].path)
        return p if p.is_absolute() else self.root / p

    @property
    def has_speakers(self) -> bool:
        return len(self.rows) > 0 and all(r.speaker for r in self.rows)

    @property
    def has_sessions(self) -> bool:
        return len(self.rows) > 0 and all(r.session for r in self.rows)

    def index(self) -> dict[str, int]:
        """utterance id -> row number."""
        return {r.utterance: i for i, r in enumerate(self.rows)}

    def labels(self, column: str) -> tuple[list[str], list[int]]:
        """Distinct values of ``speaker`` or ``session`` and each row's integer code (-1 when empty).

        Each column is read on its own: a session (recording) id must be unique across the corpus, as a
        VoxCeleb video id is. Session codes never look at the speaker column, so the label-free methods
        that use recording metadata (``ssps.exclude_same_session``, ``ssps.session_pooling``) do not read
        speaker labels through them.
        """
        if column not in ("speaker", "session"):
            raise SSPSError(f"{self.source}: no label column {column!r} (expected speaker or session)")
        values = [getattr(r, column) for r in self.rows]
        names = sorted({v for v in values if v})
        code = {n: i for i, n in enumerate(names)}
        return names, [code[v] if v else -1 for v in values]


def write_manifest(
    path: str | Path, rows: list[Utterance], extra: dict[str, list[str]] | None = None
) -> None:
    """Write atomically: a crash never leaves a half-written manifest.

    ``extra``: more columns after the standard ones (name -> one value per row), which readers ignore,
    e.g. the true speaker beside a pseudo-label, kept for diagnostics.
    """
    extra = extra or {}
    for name, values in extra.items():
        if name in COLUMNS or len(values) != len(rows):
            raise SSPSError(f"{path}: extra column {name!r} must be new and have one value per row")
    lines = ["\t".join([*COLUMNS, *extra])]
    for i, r in enumerate(rows):
        more = [values[i] for values in extra.values()]
        for value in (r.utterance, r.path, r.speaker, r.session, *more):
            if "\t" in value or "\n" in value:
                raise SSPSError(f"{path}: value {value!r} contains a tab or newline")
        tail = "".join(f"\t{v}" for v in more)
        lines.append(f"{r.utterance}\t{r.path}\t{r.speaker}\t{r.session}\t{r.duration:.3f}{tail}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest; a missing file, a bad header or a malformed line is an error naming the line."""
    path = Path(path)
    lines = read_lines(path, "manifest")
    if not lines:
        raise SSPSError(f"{path}: empty manifest (expected a header: {' '.join(COLUMNS)})")
    header = lines[0].split("\t")
    if header[:2] != ["utterance", "path"]:
        raise SSPSError(f"{path}:1: expected header columns {', '.join(COLUMNS)}, got {header}")
    if tuple(header) == COLUMNS:
        rows = _parse_standard(path, lines)
    else:
        rows = _parse_any(path, lines, header)
    utterances = [r.utterance for r in rows]
    if len(set(utterances)) != len(utterances):  # the slow search for the line only on failure
        seen: set[str] = set()
        for n, line in enumerate(lines[1:], start=2):
            utt = line.split("\t", 1)[0]
            if line.strip() and utt in seen:
                raise SSPSError(f"{path}:{n}: duplicate utterance {utt!r}")
            seen.add(utt)
    if not rows:
        raise SSPSError(f"{path}: manifest has no utterances")
    return Manifest(rows=rows, root=path.parent, source=path)


def _parse_standard(path: Path, lines: list[str]) -> list[Utterance]:
    """The columns ``write_manifest`` writes: one split and one float per line (1 M rows in a few seconds)."""
    rows = []
    append, make = rows.append, Utterance
    for n, line in enumerate(lines[1:], start=2):
        try:
            utt, p, speaker, session, duration = line.split("\t")
            row = make(utt, p, speaker, session, float(duration) if duration else 0.0)
        except ValueError:
            if not line.strip():
                continue
            return _parse_any(path, lines, list(COLUMNS))  # names the bad line
        if not utt or not p:
            raise SSPSError(f"{path}:{n}: empty utterance or path")
        append(row)
    return rows


def _parse_any(path: Path, lines: list[str], header: list[str]) -> list[Utterance]:
    """Any column order (extra columns ignored, missing ones empty), with an error naming the bad line."""
    col = {name: i for i, name in enumerate(header)}
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) != len(header):
            raise SSPSError(f"{path}:{n}: expected {len(header)} tab-separated fields, got {len(f)}")

        def get(name: str, f: list[str] = f) -> str:
            return f[col[name]] if name in col else ""

        try:
            duration = float(get("duration") or 0.0)
        except ValueError:
            raise SSPSError(f"{path}:{n}: duration {get('duration')!r} is not a number") from None
        utt = get("utterance")
        if not utt or not get("path"):
            raise SSPSError(f"{path}:{n}: empty utterance or path")
        rows.append(Utterance(utt, get("path"), get("speaker"), get("session"), duration))
    return rows
