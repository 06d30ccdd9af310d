"""Time one Augmenter call on 2 s crops (target: under 5 ms), per strategy and noise source.

Usage: python benchmarks/bench_augment.py [--calls 300] [--cache-mb 256]
Noise sources: built-in (coloured noise + babble from 8 s training files written to a temporary folder)
and a MUSAN-like manifest (temporary files: 20 noise, 20 music, 40 speech files of 5-60 s). Prints the
start-up time (the simulated RIR pool) and the mean and 95th-percentile milliseconds per call, one thread.
``--cache-mb 0`` measures the cost when every noise file is read from disk.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ssps.augment.compose import Augmenter
from ssps.config import AugmentConfig
from ssps.data.manifest import Utterance, write_manifest

RATE = 16000


def _files(folder: Path) -> tuple[list[Path], Path]:
    rng = np.random.default_rng(0)
    train = []
    for i in range(50):
        train.append(folder / f"train/{i}.wav")
        train[-1].parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(train[-1]), rng.uniform(-0.3, 0.3, 8 * RATE).astype(np.float32), RATE)
    rows = []
    for category, count in (("noise", 20), ("music", 20), ("speech", 40)):
        for i in range(count):
            rel = f"musan/{category}/{i}.wav"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            seconds = float(rng.uniform(5, 60))
            sf.write(str(folder / rel), rng.uniform(-0.3, 0.3, int(seconds * RATE)).astype(np.float32), RATE)
            rows.append(Utterance(rel, rel, category, "", seconds))
    write_manifest(folder / "musan.tsv", rows)
    return train, folder / "musan.tsv"


def _time(aug: Augmenter, calls: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    wav = rng.uniform(-0.3, 0.3, 2 * RATE).astype(np.float32)
    for _ in range(20):  # warm the caches and FFT plans
        aug(wav, rng)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        aug(wav, rng)
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.mean(times)), 1e3 * float(np.percentile(times, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--cache-mb", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = args.cache_mb << 20
    with tempfile.TemporaryDirectory() as tmp:
        train, musan = _files(Path(tmp))
        for noise in ("built-in", "musan"):
            for strategy in ("both", "uniform"):
                cfg = AugmentConfig(strategy=strategy, noise_manifest=str(musan) if noise == "musan" else "")
                t = time.perf_counter()
                aug = Augmenter(cfg, train_paths=train, cache_bytes=cache)
                startup = time.perf_counter() - t
                mean, p95 = _time(aug, args.calls)
                print(
                    f"noise={noise:8s} strategy={strategy:7s} start-up {startup:.2f} s, "
                    f"per call {mean:.2f} ms (p95 {p95:.2f} ms), cache {args.cache_mb} MiB"
                )
    print(f"numpy {np.__version__}, {platform.processor() or platform.machine()}")


if __name__ == "__main__":
    main()
