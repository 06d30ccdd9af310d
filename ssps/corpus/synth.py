"""``ssps data synth OUT``: the built-in multi-speaker, multi-session corpus.

Speakers are MBROLA voices (one real person each) reading English through espeak-ng, plus *siblings*
derived from a voice with MBROLA's pitch / formant / tempo controls where a measurement shows they stay
apart. Every (speaker, session) draws one recording condition (:mod:`ssps.corpus.conditions`) for all of its
utterances. Layout (VoxCeleb-like)::

    OUT/wav/<speaker>/<session>/<utt>.flac   16 kHz FLAC; <session> an opaque corpus-wide recording id
    OUT/train.tsv, dev.tsv, test.tsv         manifests; speakers split by base voice
    OUT/trials/cross_session.txt             test: enrolment and test from different sessions
    OUT/trials/same_session.txt              test: the channel effect, targets from one session
    OUT/trials/cross_session_no_siblings.txt test, where siblings exist: without sibling non-targets
    OUT/trials/dev_*.txt                     the same three lists over the dev speakers
    OUT/corpus.json                          what was made, from what, and how long it took

Dev is for every choice (settings, budgets, samplers); the test lists only for the figures reported.

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
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssps.corpus.conditions import draw_condition
from ssps.corpus.lists import make_trials, write_lists
from ssps.corpus.sessions import (
    DEV_FRACTION,
    MIN_ACTIVE,
    PRESETS,
    SAMPLE_RATE,
    TEST_FRACTION,
    Job,
    rng_for,
    run_job,
    screen_voice,
)
from ssps.corpus.stats import SIBLING_RULE, sibling_separability
from ssps.corpus.voices import Identity, Voice, check_tools, find_voice, installed_voices, sibling_candidates
from ssps.data.manifest import Utterance
from ssps.errors import SSPSError
from ssps.utils.files import atomic_write_text

SPLITS = ("train", "dev", "test")
FORMAT = 2  # 2: opaque corpus-wide session ids and a dev split (1: sessNN per speaker, train/test only)


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
        "format": FORMAT,
    }
    _check_out(out, config)

    used, dropped = _usable_voices(candidates, workers, progress)
    sibling_report, idents = [], [Identity(v.database, v) for v, _ in used]
    if p.siblings:
        base_voices = [v for v, _ in used]
        sibling_report = _measure_siblings(out, base_voices, p.siblings, channels, seed, workers, progress)
        kept = {r["name"] for r in sibling_report if r["kept"]}
        idents += [c for v, _ in used for c in sibling_candidates(v, p.siblings) if c.name in kept]

    split = split_voices(sorted(v.database for v, _ in used), seed)

    jobs = [Job(i, s, str(out), seed, channels, p) for i in idents for s in range(1, p.sessions + 1)]
    results = _pool_map(run_job, jobs, workers, "sessions", progress)

    rows: dict[str, list[Utterance]] = {name: [] for name in SPLITS}
    kinds, sessions = {}, {}
    for job, r in zip(jobs, results, strict=True):
        session = job.session_id
        kinds[(job.ident.name, session)] = r["condition"].kind
        sessions[session] = {"speaker": job.ident.name} | r["condition"].to_json()
        for name, length in zip(job.names, r["lengths"], strict=True):
            rows[split[job.ident.base]].append(
                Utterance(name, f"wav/{name}", job.ident.name, session, length / SAMPLE_RATE)
            )
    base_of = {i.name: i.base for i in idents}
    # Test lists draw from the same generator as before the dev split; dev has its own.
    draw = {"test": rng_for(seed, "trials"), "dev": rng_for(seed, "dev-trials")}
    trials = {
        part: make_trials(rows[part], kinds, base_of, rng, p.max_targets)
        for part, rng in draw.items()
        if rows[part]
    }

    lists = _prefixed(trials, "lists")
    checksums = write_lists(out, lists, rows)
    seconds = time.perf_counter() - start
    hours = sum(r.duration for part in rows.values() for r in part) / 3600
    speakers = {part: len({r.speaker for r in rows[part]}) for part in SPLITS}
    summary = {
        "preset": preset, "preset_parameters": asdict(p), "channels": channels, "seed": seed,
        "sample_rate": SAMPLE_RATE, "workers": workers,
        "format": FORMAT, "voices_used": [asdict(v) | s | {"split": split[v.database]} for v, s in used],
        "voices_dropped": dropped,
        "siblings": sibling_report, "sibling_rule": SIBLING_RULE,
        "speakers": len(idents), **{f"{part}_speakers": speakers[part] for part in SPLITS},
        "sessions": len(jobs), "utterances": sum(map(len, rows.values())),
        **{f"{part}_utterances": len(rows[part]) for part in SPLITS}, "hours": round(hours, 3),
        "files_written": sum(r["written"] for r in results), "seconds": round(seconds, 1),
        "trials": _prefixed(trials, "counts"), "sha256": checksums, "manifest_sha256": sha256_text(checksums),
        "session_conditions": sessions,
    }  # fmt: skip
    atomic_write_text(out / "corpus.json", json.dumps(summary, indent=2) + "\n")
    return summary


def split_voices(bases: list[str], seed: int) -> dict[str, str]:
    """Base voice -> "train", "dev" or "test" (a voice's siblings follow it).

    The test voices are the first ``TEST_FRACTION`` of one seeded permutation, as in corpora made before
    the dev split existed (same test speakers); dev takes the next ``DEV_FRACTION`` (at least two voices),
    leaving at least one for training.
    """
    order = rng_for(seed, "split").permutation(bases).tolist()
    n_test = max(1, round(TEST_FRACTION * len(bases)))
    # Two dev voices at least, so that dev trial lists have non-targets.
    n_dev = min(max(2, round(DEV_FRACTION * len(bases))), len(bases) - n_test - 1)
    return {
        v: "test" if k < n_test else "dev" if k < n_test + n_dev else "train" for k, v in enumerate(order)
    }


def _prefixed(trials: dict[str, dict], key: str) -> dict:
    """Test lists keep their plain names (``cross_session``); dev lists are ``dev_cross_session``..."""
    return {
        (k if part == "test" else f"{part}_{k}"): v for part, t in trials.items() for k, v in t[key].items()
    }


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
        f"{args.out}: {s['speakers']} speakers ({s['train_speakers']} train, {s['dev_speakers']} dev, "
        f"{s['test_speakers']} test), "
        f"{s['sessions']} sessions, {s['utterances']} utterances, {s['hours']:.2f} h of audio, "
        f"{s['files_written']} files written, {s['seconds']:.1f} s"
    )
    return 0
