"""Does a change alter behaviour? Two git revisions side by side: the built-in corpus each one synthesises
(every file's bytes), then a short ``ssps demo --quick`` run by each on one corpus (every embedding
bit for bit, every training log row and every reported figure). Wall-clock fields (seconds, utt/s,
dates, the command line) are the only things left out of the comparison.

    python benchmarks/same_behaviour.py 128a14f 30726d3 [--preset tiny] [--demo-corpus data/default]

Exits 1 when anything differs, and prints what.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = {"time", "seconds", "utt_per_s", "date", "command", "budget"}


def export_tree(rev: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def run_in(tree: Path, args: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", "ssps", *args], cwd=tree, env=env, stdout=f, stderr=f)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:3])} failed in {tree} (exit {done.returncode}); see {log}")


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def file_digest(path: Path) -> str:
    if path.name == "corpus.json":  # holds the synthesis wall time
        return json.dumps(without_timings(json.loads(path.read_text())), sort_keys=True)
    return hashlib.md5(path.read_bytes()).hexdigest()


def compare_corpora(a: Path, b: Path) -> list[str]:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.suffix != ".log")
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.suffix != ".log")
    if files_a != files_b:
        return [f"corpus file lists differ: {sorted(set(map(str, files_a)) ^ set(map(str, files_b)))[:5]}"]
    diffs = [f"corpus {rel}" for rel in files_a if file_digest(a / rel) != file_digest(b / rel)]
    print(f"corpus: {len(files_a)} files compared, {len(diffs)} differ")
    return diffs


def compare_demos(a: Path, b: Path) -> list[str]:
    diffs = []
    results = [without_timings(json.loads((d / "results.json").read_text())) for d in (a, b)]
    if json.dumps(results[0], sort_keys=True) != json.dumps(results[1], sort_keys=True):
        diffs.append("results.json")
    embeddings = sorted(p.name for p in (a / "embeddings").glob("*.npz"))
    for name in embeddings:
        x, y = np.load(a / "embeddings" / name), np.load(b / "embeddings" / name)
        if x.files != y.files or not all(np.array_equal(x[k], y[k]) for k in x.files):
            diffs.append(f"embeddings/{name}")
    logs = sorted(p.relative_to(a) for p in a.glob("*/metrics.jsonl"))
    for rel in logs:
        rows = [[without_timings(json.loads(line)) for line in open(d / rel)] for d in (a, b)]
        if rows[0] != rows[1]:
            diffs.append(str(rel))
    print(f"demo: results.json, {len(embeddings)} embedding files, {len(logs)} training logs compared")
    return diffs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rev_a")
    p.add_argument("rev_b")
    p.add_argument("--preset", default="tiny", help="corpus preset each revision synthesises (default tiny)")
    p.add_argument("--demo-corpus", help="corpus both demos train on (default: the one rev_a synthesised)")
    p.add_argument(
        "--demo-args",
        default="--steps 4 --base-epochs 2 --cont-epochs 1 --batch-size 16",
        help="extra `ssps demo --quick` arguments (default: a run of seconds)",
    )
    p.add_argument("--work", help="folder for the trees and outputs (default: a temporary one)")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="same_behaviour_"))
    revs = (args.rev_a, args.rev_b)
    trees = [export_tree(rev, work / f"tree_{i}") for i, rev in enumerate(revs)]
    for i, tree in enumerate(trees):
        synth = ["data", "synth", str(work / f"corpus_{i}"), "--preset", args.preset, "--workers", "2"]
        run_in(tree, synth, work / f"synth_{i}.log")
    diffs = compare_corpora(work / "corpus_0", work / "corpus_1")
    corpus = Path(args.demo_corpus).resolve() if args.demo_corpus else work / "corpus_0"
    for i, tree in enumerate(trees):
        demo = ["demo", "--quick", "--corpus", str(corpus), "--out", str(work / f"demo_{i}")]
        run_in(tree, demo + args.demo_args.split(), work / f"demo_{i}.log")
    diffs += compare_demos(work / "demo_0", work / "demo_1")
    if diffs:
        print(f"{revs[0]} and {revs[1]} differ in: {', '.join(diffs)}  (outputs in {work})")
        sys.exit(1)
    print(f"{revs[0]} and {revs[1]} behave the same (outputs in {work})")


if __name__ == "__main__":
    main()
