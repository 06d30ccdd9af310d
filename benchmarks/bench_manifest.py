"""Loading a VoxCeleb2-sized manifest (1,092,009 rows, generated): this tree's ``read_manifest`` beside the
one of a baseline git revision (default ``main``), in the same run (target: < 10 s).

    python benchmarks/bench_manifest.py [--rows 1092009] [--baseline main] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ssps.data.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]


def write_rows(path: Path, n: int) -> None:
    """VoxCeleb2-like rows: ~180 utterances per speaker, ~7 per video, durations 4-12 s."""
    with open(path, "w") as f:
        f.write("utterance\tpath\tspeaker\tsession\tduration\n")
        for i in range(n):
            speaker, video = f"id{i // 180:05d}", f"v{i // 7:07d}"
            utt = f"{speaker}/{video}/{i % 7:05d}.wav"
            f.write(f"{utt}\twav/{utt}\t{speaker}\t{video}\t{4 + (i % 800) / 100:.3f}\n")


def baseline_reader(rev: str, tmp: Path):
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:ssps/data/manifest.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp / "baseline_manifest.py").write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_manifest", tmp / "baseline_manifest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_manifest"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.read_manifest


def best_of(read, path: Path, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = read(path)
        best = min(best, time.perf_counter() - t0)
        del m
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_092_009)
    parser.add_argument("--baseline", default="main", help="git revision to compare with ('' = none)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.tsv"
        write_rows(path, args.rows)
        size = path.stat().st_size / 2**20
        print(
            f"| read_manifest, {args.rows:,} rows ({size:.0f} MiB) | best of {args.repeats}, wall s |"
            "\n|---|---|"
        )
        if args.baseline:
            before = best_of(baseline_reader(args.baseline, Path(tmp)), path, args.repeats)
            print(f"| before ({args.baseline}) | {before:.2f} |")
        after = best_of(read_manifest, path, args.repeats)
        print(f"| after (this tree) | {after:.2f} |")


if __name__ == "__main__":
    main()
