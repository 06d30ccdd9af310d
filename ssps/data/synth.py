"""``ssps data synth OUT``: the built-in multi-speaker, multi-session corpus.

Speakers are MBROLA voices (one real person each) reading English through espeak-ng, plus *siblings*
derived from a voice with MBROLA's pitch / formant / tempo controls where a measurement shows they stay
apart. Every (speaker, session) draws one recording condition (:mod:`ssps.data.conditions`) for all of its
utterances. Layout (VoxCeleb-like)::

    OUT/wav/<speaker>/<session>/<utt>.flac   16 kHz FLAC
    OUT/train.tsv, OUT/test.tsv              manifests; speakers split by base voice
    OUT/trials/cross_session.txt             enrolment and test from different sessions
    OUT/trials/same_session.txt              the channel effect: targets from one session
    OUT/trials/cross_session_no_siblings.txt where test siblings exist: without sibling non-targets
    OUT/corpus.json                          what was made, from what, and how long it took

Manifests, trials and corpus.json are written last, so an interrupted run leaves none of them; a rerun
skips the sessions whose audio exists. Every session's randomness is seeded from (seed, speaker,
session), so the result does not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ssps.augment.channel import apply_codec, set_level
from ssps.data.conditions import apply_condition, draw_condition
from ssps.data.manifest import Utterance, write_manifest
from ssps.data.stats import SIBLING_RULE, sibling_separability
from ssps.data.text import sentences
from ssps.data.voices import (
    Identity,
    Voice,
    active_ratio,
    check_tools,
    find_voice,
    installed_voices,
    sibling_candidates,
    synthesize,
)
from ssps.errors import SSPSError
from ssps.utils.files import atomic_path, atomic_write_text, sha256

SAMPLE_RATE = 16000
TEST_FRACTION = 0.25  # of base voices; a voice's siblings follow it
MIN_ACTIVE = 0.5  # voices whose English comes out mostly silent are dropped
SCREEN_SENTENCES = 3


@dataclass(frozen=True)
class Preset:
    voices: tuple[str, ...]  # MBROLA databases; empty = every usable installed voice
    sessions: int  # per speaker
    utterances: int  # per session
    duration: tuple[float, float]  # seconds, drawn per utterance
    siblings: int  # candidate siblings per voice (each kept only if it measures apart)
    max_targets: int  # target trials per list (as many non-targets)


PRESETS = {
    "tiny": Preset(("us1", "us2", "us3", "en1", "de2", "fr1"), 2, 3, (1.0, 1.5), 0, 200),
    "default": Preset((), 4, 8, (2.0, 4.0), 1, 5000),
    "large": Preset((), 8, 16, (2.0, 5.0), 2, 20000),
}


def rng_for(*parts: int | str) -> np.random.Generator:
    """A generator seeded from names and numbers, identical in every process."""
    return np.random.default_rng([p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts])


@dataclass(frozen=True)
class Job:
    """One (speaker, session): synthesise its utterances under the session's condition."""

    ident: Identity
    session: int
    out: str
    seed: int
    channels: str
    preset: Preset

    @property
    def names(self) -> list[str]:
        return [
            f"{self.ident.name}/sess{self.session:02d}/u{k:02d}.flac" for k in range(self.preset.utterances)
        ]


def run_job(job: Job) -> dict:
    """Write the session's missing FLAC files; return its condition, utterances and their lengths."""
    rng = rng_for(job.seed, job.ident.name, job.session)
    cond = draw_condition(rng, job.channels)
    wav_dir = Path(job.out, "wav")
    paths = [wav_dir / name for name in job.names]
    if all(p.is_file() for p in paths):  # resume: the whole session exists
        return {"condition": cond, "lengths": [sf.info(p).frames for p in paths], "written": 0}
    chain = cond.build(SAMPLE_RATE)
    texts = sentences()
    clean = [_utterance(job.ident, texts, rng, job.preset.duration) for _ in paths]
    wavs = [apply_condition(w, cond, chain, rng, codec=False) for w in clean]
    if cond.codec != "none":
        # One codec pass over the whole session: two sox calls per session instead of per utterance.
        coded = set_level(apply_codec(np.concatenate(wavs), cond.codec, SAMPLE_RATE), cond.level)
        wavs = np.split(coded, np.cumsum([len(w) for w in wavs])[:-1])
    written = 0
    for path, wav in zip(paths, wavs, strict=True):
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                sf.write(tmp, np.clip(wav, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            written += 1
    return {"condition": cond, "lengths": [len(w) for w in wavs], "written": written}


def _utterance(ident: Identity, texts: list[str], rng: np.random.Generator, duration: tuple[float, float]):
    """(T,) clean speech of a drawn duration: sentences with small pitch/tempo jitter, cut to length."""
    target = int(rng.uniform(*duration) * SAMPLE_RATE)
    parts, total = [], 0
    while total < target:
        text = texts[rng.integers(len(texts))]
        wav = synthesize(
            ident, text, SAMPLE_RATE, pitch=rng.uniform(0.97, 1.03), tempo=rng.uniform(0.95, 1.05)
        )
        parts.append(wav)
        total += len(wav)
    wav = np.concatenate(parts)[:target]
    fade = min(len(wav), int(0.02 * SAMPLE_RATE))
    wav[len(wav) - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)  # no click at the cut
    return wav


def screen_voice(voice: Voice) -> dict:
    """Active-speech ratio of a voice reading English; ``error`` when it cannot speak at all."""
    try:
        ident = Identity(voice.database, voice)
        wav = np.concatenate([synthesize(ident, s, SAMPLE_RATE) for s in sentences()[:SCREEN_SENTENCES]])
    except SSPSError as e:
        return {"database": voice.database, "error": str(e).splitlines()[0]}
    ratio = active_ratio(wav, SAMPLE_RATE)
    return {
        "database": voice.database,
        "active_ratio": round(ratio, 3),
        "seconds": round(len(wav) / SAMPLE_RATE, 2),
    }


def _check_out(out: Path, config: dict) -> None:
    """OUT must be a writable folder, empty or holding a (partial) corpus made with the same settings."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise SSPSError(f"OUT {out}: not a writable folder ({e.strerror or e})") from None
    marker = out / ".synth.json"
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous != config:
            raise SSPSError(f"OUT {out}: holds a corpus made with {previous}; use another folder")
    else:
        atomic_write_text(marker, json.dumps(config, sort_keys=True) + "\n")


def _pool_map(fn, items: list, workers: int, desc: str, progress: bool) -> list:
    """fn over items in ``workers`` processes (in-process for 1), results in input order, with a bar."""
    bar = tqdm(total=len(items), desc=desc, unit="job", disable=not progress, mininterval=1.0, leave=False)
    results = [None] * len(items)
    if workers <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            bar.update()
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for i, r in pool.imap_unordered(_indexed, [(fn, i, x) for i, x in enumerate(items)]):
                results[i] = r
                bar.update()
    bar.close()
    return results


def _indexed(arg):
    fn, i, x = arg
    return i, fn(x)


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
    ses = np.array([f"{r.speaker}/{r.session}" for r in rows])
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


def _usable_voices(candidates: list[Voice], workers: int, progress: bool) -> tuple[list, list]:
    """Screen voices: ([(voice, screening)], [dropped with reason]); at least two must be usable."""
    screened = _pool_map(screen_voice, candidates, workers, "screening voices", progress)
    used, dropped = [], []
    for v, s in zip(candidates, screened, strict=True):
        if "error" in s:
            dropped.append({"database": v.database, "reason": s["error"]})
        elif s["active_ratio"] < MIN_ACTIVE:
            reason = f"mostly silent: active-speech ratio {s['active_ratio']} < {MIN_ACTIVE}"
            dropped.append(s | {"reason": reason})
        else:
            used.append((v, s))
    if len(used) < 2:
        names = [v.database for v in candidates]
        raise SSPSError(f"only {len(used)} usable MBROLA voice(s) among {names}: need 2; see `make system`")
    return used, dropped


def _measure_siblings(
    out: Path, voices: list[Voice], n: int, channels: str, seed: int, workers: int, progress: bool
) -> list[dict]:
    """The sibling separability report, measured once per corpus folder."""
    # Deterministic for the settings that .synth.json pins, so a resumed run reuses it.
    cache = out / ".siblings.json"
    names = [v.database for v in voices]
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    if cached.get("voices") == names:
        return cached["report"]
    pool = lambda fn, xs: _pool_map(fn, xs, workers, "measuring siblings", progress)  # noqa: E731
    report = sibling_separability(voices, n, channels, seed, pool)
    atomic_write_text(cache, json.dumps({"voices": names, "report": report}) + "\n")
    return report


def _write_lists(out: Path, trials: dict, train_rows: list, test_rows: list) -> dict[str, str]:
    """Trial lists, then the manifests, each atomically; returns their sha256 by relative path."""
    checksums = {}
    for name, lines in trials.items():
        path = out / "trials" / f"{name}.txt"
        atomic_write_text(path, "".join(f"{label} {a} {b}\n" for label, a, b in lines))
        checksums[f"trials/{name}.txt"] = sha256(path)
    for name, rows in (("test.tsv", test_rows), ("train.tsv", train_rows)):
        write_manifest(out / name, rows)
        checksums[name] = sha256(out / name)
    return checksums


def synth_corpus(
    out: str | Path,
    preset: str = "tiny",
    channels: str = "mild",
    seed: int = 0,
    workers: int = 2,
    voices: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """Make (or finish) a corpus in ``out``; returns the corpus.json content.

    Audio first (resumable), then trial lists and manifests, corpus.json last of all: an interrupted run
    leaves no manifest behind, and bad options fail before anything is written.
    """
    start = time.perf_counter()
    if preset not in PRESETS:
        raise SSPSError(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
    draw_condition(np.random.default_rng(0), channels)  # validates --channels before anything is written
    if workers < 1:
        raise SSPSError(f"--workers {workers}: expected a positive number")
    p = PRESETS[preset]
    check_tools()
    wanted = list(voices or p.voices)
    candidates = [find_voice(db) for db in wanted] if wanted else list(installed_voices().values())
    out = Path(out)
    config = {
        "preset": preset,
        "channels": channels,
        "seed": seed,
        "voices": sorted(v.database for v in candidates),
    }
    _check_out(out, config)

    used, dropped = _usable_voices(candidates, workers, progress)
    sibling_report, idents = [], [Identity(v.database, v) for v, _ in used]
    if p.siblings:
        base_voices = [v for v, _ in used]
        sibling_report = _measure_siblings(out, base_voices, p.siblings, channels, seed, workers, progress)
        kept = {r["name"] for r in sibling_report if r["kept"]}
        idents += [c for v, _ in used for c in sibling_candidates(v, p.siblings) if c.name in kept]

    bases = sorted(v.database for v, _ in used)
    n_test = max(1, round(TEST_FRACTION * len(bases)))
    test_bases = set(rng_for(seed, "split").permutation(bases)[:n_test].tolist())

    jobs = [Job(i, s, str(out), seed, channels, p) for i in idents for s in range(1, p.sessions + 1)]
    results = _pool_map(run_job, jobs, workers, "sessions", progress)

    train_rows, test_rows, kinds, sessions = [], [], {}, {}
    for job, r in zip(jobs, results, strict=True):
        session = f"sess{job.session:02d}"
        kinds[(job.ident.name, session)] = r["condition"].kind
        sessions[f"{job.ident.name}/{session}"] = r["condition"].to_json()
        rows = test_rows if job.ident.base in test_bases else train_rows
        for name, length in zip(job.names, r["lengths"], strict=True):
            rows.append(Utterance(name, f"wav/{name}", job.ident.name, session, length / SAMPLE_RATE))
    base_of = {i.name: i.base for i in idents}
    trials = make_trials(test_rows, kinds, base_of, rng_for(seed, "trials"), p.max_targets)

    checksums = _write_lists(out, trials["lists"], train_rows, test_rows)
    seconds = time.perf_counter() - start
    hours = sum(r.duration for r in train_rows + test_rows) / 3600
    summary = {
        "preset": preset, "preset_parameters": asdict(p), "channels": channels, "seed": seed,
        "sample_rate": SAMPLE_RATE, "workers": workers,
        "voices_used": [asdict(v) | s | {"split": _split(v.database, test_bases)} for v, s in used],
        "voices_dropped": dropped,
        "siblings": sibling_report, "sibling_rule": SIBLING_RULE,
        "speakers": len(idents), "train_speakers": sum(i.base not in test_bases for i in idents),
        "test_speakers": sum(i.base in test_bases for i in idents), "sessions": len(jobs),
        "utterances": len(train_rows) + len(test_rows), "train_utterances": len(train_rows),
        "test_utterances": len(test_rows), "hours": round(hours, 3),
        "files_written": sum(r["written"] for r in results), "seconds": round(seconds, 1),
        "trials": trials["counts"], "sha256": checksums, "manifest_sha256": sha256_text(checksums),
        "session_conditions": sessions,
    }  # fmt: skip
    atomic_write_text(out / "corpus.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _split(database: str, test_bases: set[str]) -> str:
    return "test" if database in test_bases else "train"


def sha256_text(checksums: dict[str, str]) -> str:
    """One checksum over the manifests and trial lists (a stable digest of their digests)."""
    return hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth", help="make the built-in multi-speaker, multi-session corpus (espeak-ng + MBROLA)"
    )
    p.add_argument("out", help="output folder (created; a rerun resumes)")
    p.add_argument("--preset", default="default", help=f"one of {', '.join(PRESETS)} (default: default)")
    p.add_argument("--channels", default="mild", help="recording-condition distribution: mild or hard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--voices", default="", help="comma-separated MBROLA databases (default: the preset's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    voices = [v for v in args.voices.split(",") if v] or None
    s = synth_corpus(args.out, args.preset, args.channels, args.seed, args.workers, voices, not args.quiet)
    print(
        f"{args.out}: {s['speakers']} speakers ({s['train_speakers']} train, {s['test_speakers']} test), "
        f"{s['sessions']} sessions, {s['utterances']} utterances, {s['hours']:.2f} h of audio, "
        f"{s['files_written']} files written, {s['seconds']:.1f} s"
    )
    return 0
