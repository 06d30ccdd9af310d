"""Cosine scoring of trials, optional adaptive s-norm (AS-norm), and the score file.

Score file: ``# key=value`` header lines (``trials_sha256`` names the trial list the scores belong to),
then one ``enroll test score label`` line per trial, label 1/0. Scores are written with ``repr`` so
reading them back gives the very same float64 values and the same metrics to the last digit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssps.data.trials import Trials
from ssps.errors import SSPSError
from ssps.eval.embed import Embeddings
from ssps.utils.files import atomic_write_text, read_lines

CHUNK = 65536  # rows per block: bounds the memory of gathered pairs and of cohort score matrices


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) float64 rows of unit norm (an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _pair_dots(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """(T,) row-wise dot products a[ia[t]] . b[ib[t]], in blocks."""
    out = np.empty(len(ia), dtype=np.float64)
    for start in range(0, len(ia), CHUNK):
        sl = slice(start, start + CHUNK)
        out[sl] = np.einsum("td,td->t", a[ia[sl]], b[ib[sl]])
    return out


def cohort_stats(x: np.ndarray, cohort: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each row's ``top_k`` highest cosine scores against the cohort.

    Args:
        x: (N, D) unit-norm embeddings.
        cohort: (M, D) unit-norm cohort embeddings.
        top_k: how many of the highest cohort scores to keep (clipped to M).

    Returns:
        mean: (N,), std: (N,) population std (ddof = 0), both float64.
    """
    k = min(top_k, cohort.shape[0])
    mean = np.empty(len(x))
    std = np.empty(len(x))
    step = max(1, CHUNK * 16 // max(cohort.shape[0], 1))
    for start in range(0, len(x), step):
        s = x[start : start + step] @ cohort.T  # (n, M)
        top = np.partition(s, s.shape[1] - k, axis=1)[:, -k:]  # (n, k), unordered
        mean[start : start + step] = top.mean(axis=1)
        std[start : start + step] = top.std(axis=1)
    return mean, std


def score_trials(
    embeddings: Embeddings, trials: Trials, cohort: Embeddings | None = None, top_k: int = 300
) -> np.ndarray:
    """Score every trial by cosine similarity, optionally AS-normalised.

    AS-norm (adaptive symmetric score normalisation): with mu_e, sd_e the mean and std of the enrolment
    utterance's ``top_k`` highest scores against the cohort (mu_t, sd_t likewise for the test one),
    s' = 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t).

    Args:
        embeddings: must hold every utterance the trials name.
        trials: T trials.
        cohort: cohort embeddings (speakers disjoint from the trials), or None for plain cosine.
        top_k: cohort scores kept per utterance (clipped to the cohort size).

    Returns:
        (T,) float64 scores; plain cosine lies in [-1, 1].
    """
    ids = trials.files()
    rows = embeddings.rows(ids, source=str(trials.path))
    x = l2_normalise(embeddings.vectors[rows])  # (U, D), each utterance normalised once
    local = {u: i for i, u in enumerate(ids)}
    ie = np.fromiter((local[u] for u in trials.enroll), dtype=np.int64, count=len(trials))
    it = np.fromiter((local[u] for u in trials.test), dtype=np.int64, count=len(trials))
    scores = _pair_dots(x, x, ie, it)
    if cohort is None:
        return scores
    if top_k < 2:
        raise SSPSError(f"--top-k must be >= 2 (a std of one score is 0), got {top_k}")
    if len(cohort.ids) < 2:
        raise SSPSError(f"cohort has {len(cohort.ids)} embedding(s); AS-norm needs at least 2")
    if cohort.vectors.shape[1] != x.shape[1]:
        raise SSPSError(f"cohort embeddings are {cohort.vectors.shape[1]}-d, trial ones {x.shape[1]}-d")
    mean, std = cohort_stats(x, l2_normalise(cohort.vectors), top_k)
    std = np.maximum(std, 1e-12)
    return 0.5 * ((scores - mean[ie]) / std[ie] + (scores - mean[it]) / std[it])


@dataclass(frozen=True)
class Scores:
    """A parsed score file."""

    enroll: list[str]
    test: list[str]
    scores: np.ndarray  # (T,) float64
    labels: np.ndarray  # (T,) bool
    header: dict[str, str]
    path: Path | None = None


def write_scores(
    path: str | Path, trials: Trials, scores: np.ndarray, header: dict[str, str] | None = None
) -> None:
    """Write ``enroll test score label`` lines after ``# key=value`` header lines, atomically."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(trials),):
        raise SSPSError(f"{path}: {len(trials)} trials but {scores.shape} scores")
    head = {"trials": str(trials.path), "trials_sha256": trials.sha256, **(header or {})}
    lines = [f"# {k}={v}" for k, v in head.items()]
    for e, t, s, y in zip(trials.enroll, trials.test, scores.tolist(), trials.labels.tolist(), strict=True):
        lines.append(f"{e} {t} {s!r} {int(y)}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_scores(path: str | Path) -> Scores:
    """Read a score file; a malformed line is an SSPSError naming ``file:line``."""
    path = Path(path)
    lines = read_lines(path, "scores file")
    header: dict[str, str] = {}
    enroll, test, values, labels = [], [], [], []
    for n, line in enumerate(lines, start=1):
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition("=")
            if sep:
                header[key.strip()] = value.strip()
            continue
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4 or fields[3] not in ("0", "1"):
            raise SSPSError(f"{path}:{n}: expected 'ENROLL TEST SCORE 1|0', got {line!r}")
        try:
            value = float(fields[2])
        except ValueError:
            raise SSPSError(f"{path}:{n}: score {fields[2]!r} is not a number") from None
        enroll.append(fields[0])
        test.append(fields[1])
        values.append(value)
        labels.append(fields[3] == "1")
    if not values:
        raise SSPSError(f"{path}: scores file has no trials")
    return Scores(enroll, test, np.array(values), np.array(labels, dtype=np.bool_), header, path)
