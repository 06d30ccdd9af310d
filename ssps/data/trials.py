"""Trial lists: which pairs of utterances to score, and whether each pair is the same speaker.

Two formats, detected per file from its first line:

- VoxCeleb: ``1 id10270/x6u/00001.wav id10270/8jE/00008.wav`` (label 1/0 first),
- Kaldi: ``id10270/x6u/00001.wav id10270/8jE/00008.wav target`` (``target`` / ``nontarget`` last).

Utterance ids are paths relative to the audio root, so a trial list and a folder are all it takes to
evaluate. :func:`write_trials` always writes the VoxCeleb format.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "trials.txt")
>>> write_trials(path, ["a/1.wav", "a/1.wav"], ["a/2.wav", "b/1.wav"], [True, False])
>>> t = read_trials(path)
>>> len(t), t.n_target, t.n_nontarget, t.files()
(2, 1, 1, ['a/1.wav', 'a/2.wav', 'b/1.wav'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssps.errors import SSPSError
from ssps.utils.files import atomic_write_text, read_lines, sha256

_VOX_LABELS = {"1": True, "0": False}
_KALDI_LABELS = {"target": True, "nontarget": False}


@dataclass(frozen=True)
class Trials:
    """A parsed trial list.

    Attributes:
        enroll: (T,) enrolment utterance ids.
        test: (T,) test utterance ids.
        labels: (T,) np.bool_, True = same speaker (target trial).
        path: the file it was read from.
        sha256: checksum of that file, printed with every result so numbers can be traced to their list.
    """

    enroll: list[str]
    test: list[str]
    labels: np.ndarray
    path: Path
    sha256: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_target(self) -> int:
        return int(self.labels.sum())

    @property
    def n_nontarget(self) -> int:
        return int(len(self.labels) - self.labels.sum())

    def files(self) -> list[str]:
        """The distinct utterance ids the trials name, sorted."""
        return sorted(set(self.enroll) | set(self.test))

    def subset(self, index: np.ndarray) -> Trials:
        """The trials at positions ``index`` (same path and checksum: the source list is unchanged)."""
        index = np.asarray(index, dtype=np.int64)
        return Trials(
            enroll=[self.enroll[i] for i in index],
            test=[self.test[i] for i in index],
            labels=self.labels[index],
            path=self.path,
            sha256=self.sha256,
        )


def _detect(fields: list[str]) -> str:
    if len(fields) == 3 and fields[0] in _VOX_LABELS:
        return "voxceleb"
    if len(fields) == 3 and fields[2] in _KALDI_LABELS:
        return "kaldi"
    return ""


def read_trials(path: str | Path) -> Trials:
    """Read a VoxCeleb- or Kaldi-format trial list; blank lines are skipped.

    Raises:
        SSPSError: missing or empty file, unknown format, or a malformed line (named as ``file:line``).
    """
    path = Path(path)
    lines = read_lines(path, "trial list")
    enroll, test, labels = [], [], []
    fmt = ""
    for n, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if not fmt:
            fmt = _detect(fields)
            if not fmt:
                raise SSPSError(
                    f"{path}:{n}: unknown trial format {line.strip()!r}; expected "
                    "'1|0 ENROLL TEST' (VoxCeleb) or 'ENROLL TEST target|nontarget' (Kaldi)"
                )
        if fmt == "voxceleb":
            if len(fields) != 3 or fields[0] not in _VOX_LABELS:
                raise SSPSError(f"{path}:{n}: expected '1|0 ENROLL TEST' (VoxCeleb format), got {line!r}")
            label, e, t = _VOX_LABELS[fields[0]], fields[1], fields[2]
        else:
            if len(fields) != 3 or fields[2] not in _KALDI_LABELS:
                raise SSPSError(
                    f"{path}:{n}: expected 'ENROLL TEST target|nontarget' (Kaldi format), got {line!r}"
                )
            e, t, label = fields[0], fields[1], _KALDI_LABELS[fields[2]]
        enroll.append(e)
        test.append(t)
        labels.append(label)
    if not labels:
        raise SSPSError(f"{path}: trial list has no trials")
    return Trials(enroll, test, np.array(labels, dtype=np.bool_), path, sha256(path))


def write_trials(
    path: str | Path, enroll: Sequence[str], test: Sequence[str], labels: Sequence[bool]
) -> None:
    """Write ``label enroll test`` lines (VoxCeleb format), atomically."""
    if not len(enroll) == len(test) == len(labels):
        raise SSPSError(f"{path}: enroll, test and labels differ in length")
    lines = []
    for e, t, label in zip(enroll, test, labels, strict=True):
        for name in (e, t):
            if not name or any(c.isspace() for c in name):
                raise SSPSError(f"{path}: utterance id {name!r} is empty or contains whitespace")
        lines.append(f"{int(bool(label))} {e} {t}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def check_paths(paths: Sequence[Path], source: str) -> None:
    """Fail early, naming what is missing, rather than an hour into embedding.

    Raises:
        SSPSError: ``source: N of M files missing, e.g. p1, p2, ...`` (the first 5 missing paths).
    """
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:5])
        more = ", ..." if len(missing) > 5 else ""
        raise SSPSError(f"{source}: {len(missing)} of {len(paths)} audio files missing: {shown}{more}")


def resolve_files(trials: Trials, root: str | Path) -> tuple[list[str], list[Path]]:
    """The distinct utterance ids of ``trials`` and their paths under ``root``."""
    ids = trials.files()
    return ids, [Path(root) / i for i in ids]


def check_files(trials: Trials, root: str | Path) -> None:
    """Every utterance the trials name must exist under ``root``; otherwise SSPSError (count, first 5)."""
    if not Path(root).is_dir():
        raise SSPSError(f"{root}: audio root folder not found")
    _, paths = resolve_files(trials, root)
    check_paths(paths, f"{trials.path} (root {root})")
