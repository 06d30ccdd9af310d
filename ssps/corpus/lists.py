"""Trial lists of the built-in corpus: cross-session, same-session and without sibling non-targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssps.data.manifest import Utterance, write_manifest
from ssps.utils.files import atomic_write_text, sha256


def make_trials(
    rows: list[Utterance],
    kinds: dict[tuple[str, str], str],
    bases: dict[str, str],
    rng: np.random.Generator,
    max_targets: int,
) -> dict:
    """Trial lists over the test utterances.

    cross_session: targets from two sessions of one speaker; same_session: targets from one session. Each
    list has as many non-targets as targets: where siblings exist a quarter are sibling pairs (same base
    voice), then half of the rest are *hard* (another voice recorded in the same kind of condition) and the
    others random pairs of different voices. cross_session_no_siblings drops the sibling non-targets.

    Args:
        rows: test utterances (speaker and session filled).
        kinds: (speaker, session) -> condition kind.
        bases: speaker -> base voice.
        rng: draws the sampled pairs.
        max_targets: cap on targets per list.

    Returns:
        {"lists": {name: [(label, enrol, test)]}, "counts": {name: {category: count}}}.
    """
    ids = [r.utterance for r in rows]
    spk = np.array([r.speaker for r in rows])
    ses = np.array([r.session for r in rows])  # corpus-wide recording ids
    base = np.array([bases[r.speaker] for r in rows])
    kind = np.array([kinds[(r.speaker, r.session)] for r in rows])
    i, j = np.triu_indices(len(rows), 1)
    same_spk = spk[i] == spk[j]
    targets = {
        "cross_session": np.flatnonzero(same_spk & (ses[i] != ses[j])),
        "same_session": np.flatnonzero(same_spk & (ses[i] == ses[j])),
    }
    has_siblings = bool(np.any((base[i] == base[j]) & ~same_spk))
    lists, counts = {}, {}
    for name, t in targets.items():
        if len(t) > max_targets:
            t = np.sort(rng.choice(t, max_targets, replace=False))
        n = len(t)
        n_sib = n // 4 if has_siblings else 0
        n_hard = (n - n_sib) // 2
        other_base = base[i] != base[j]
        pools = {
            "sibling": np.flatnonzero((base[i] == base[j]) & ~same_spk),
            "hard": np.flatnonzero(other_base & (kind[i] == kind[j])),
            "random": np.flatnonzero(other_base),
        }
        picked, category = [], {}
        for cat, want in (("sibling", n_sib), ("hard", n_sib + n_hard), ("random", n)):
            want -= len(picked)  # a category that runs short is made up by the next one
            pool = np.setdiff1d(pools[cat], np.array(picked, dtype=int))
            chosen = np.sort(rng.choice(pool, max(0, min(want, len(pool))), replace=False))
            picked += chosen.tolist()
            category.update({int(k): cat for k in chosen})
        lists[name] = [(1, ids[i[k]], ids[j[k]]) for k in t] + [(0, ids[i[k]], ids[j[k]]) for k in picked]
        counts[name] = {"target": n} | {c: sum(v == c for v in category.values()) for c in pools}
        if name == "cross_session" and has_siblings:
            keep = [k for k in picked if category[k] != "sibling"]
            lists["cross_session_no_siblings"] = [(1, ids[i[k]], ids[j[k]]) for k in t] + [
                (0, ids[i[k]], ids[j[k]]) for k in keep
            ]
            counts["cross_session_no_siblings"] = counts[name] | {"sibling": 0}
    return {"lists": lists, "counts": counts}


def write_lists(out: Path, trials: dict, manifests: dict[str, list[Utterance]]) -> dict[str, str]:
    """Trial lists, then the manifests (``<split>.tsv``), each atomically; returns sha256 by relative path.

    The training manifest is written last of all: its presence means the corpus is complete.
    """
    checksums = {}
    for name, lines in trials.items():
        path = out / "trials" / f"{name}.txt"
        atomic_write_text(path, "".join(f"{label} {a} {b}\n" for label, a, b in lines))
        checksums[f"trials/{name}.txt"] = sha256(path)
    for split in sorted(manifests, key=lambda name: name == "train"):
        write_manifest(out / f"{split}.tsv", manifests[split])
        checksums[f"{split}.tsv"] = sha256(out / f"{split}.tsv")
    return checksums


LIST_NAMES = ("cross_session", "cross_session_no_siblings", "same_session")


def trial_lists(corpus: Path, split: str) -> dict[str, Path]:
    """The trial lists of one split of a built-in corpus that exist: name -> path.

    Test lists keep the names they had before the dev split (``trials/cross_session.txt``); dev lists are
    ``trials/dev_cross_session.txt``...; corpora made before the dev split have no dev lists.
    """
    if split not in ("dev", "test"):
        raise ValueError(f"split: expected dev or test, got {split!r}")
    prefix = "" if split == "test" else "dev_"
    paths = {name: Path(corpus) / "trials" / f"{prefix}{name}.txt" for name in LIST_NAMES}
    return {name: path for name, path in paths.items() if path.is_file()}
