"""Time ``prepare_voxceleb`` (folder walk + header reads) on a fake VoxCeleb tree of short wav files.

Usage: python benchmarks/bench_prepare.py [--files 4000] [--jobs 1 8]
Prints files per second for each thread count; multiply out for VoxCeleb2 dev (1,092,009 files). The
files sit in the page cache here, so a cold network disk is slower and gains more from threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ssps.data.voxceleb import prepare_voxceleb

VOXCELEB2_DEV = 1_092_009


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    wav = np.random.default_rng(0).uniform(-0.3, 0.3, 1600).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "vox"
        for i in range(args.files):
            path = root / "wav" / f"id{10000 + i // 100}" / f"video{i // 10 % 10}" / f"{i % 10:05d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), wav, 16000)
        for jobs in args.jobs:
            t = time.perf_counter()
            rows, _ = prepare_voxceleb(root, Path(tmp) / "out", jobs=jobs)
            rate = len(rows) / (time.perf_counter() - t)
            print(f"jobs={jobs}: {rate:.0f} files/s ({VOXCELEB2_DEV / rate / 60:.1f} min for VoxCeleb2 dev)")


if __name__ == "__main__":
    main()
