"""CPU seconds of one SimCLR step's front end + encoder forward + backward + Adam step, by mel count.

    python benchmarks/bench_mels.py [--mels 40,80] [--repeats 2] [--steps 5]

The demo's batch (256 crops of 2 s, small TDNN, one thread), random audio; one warm-up step per model is
left out. Each mel count is measured ``repeats`` times, interleaved, so a drifting machine shows as spread.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_step_floor import simclr_run, train_step


def step_seconds(n_mels: int, steps: int, manifest: str) -> float:
    run = simclr_run(manifest, (f"features.n_mels={n_mels}",))
    cfg = run.cfg
    x = torch.randn(2 * cfg.train.batch_size, int(cfg.method.simclr.crop_seconds * cfg.features.sample_rate))
    total = 0.0
    for i in range(steps + 1):
        t0 = time.process_time()
        train_step(run, run.method.embedder.features(x))
        total += (time.process_time() - t0) if i else 0.0
    return total / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mels", default="40,80")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--manifest", default="data/default/train.tsv")
    args = p.parse_args()
    torch.set_num_threads(1)
    mels = [int(m) for m in args.mels.split(",")]
    for r in range(args.repeats):
        for m in mels:
            print(
                f"repeat {r}: {m} mels {step_seconds(m, args.steps, args.manifest):.3f} CPU s / step",
                flush=True,
            )


if __name__ == "__main__":
    main()
