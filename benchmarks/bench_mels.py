"""CPU seconds of one SimCLR step's front end + encoder forward + backward + Adam step, by mel count.

    python benchmarks/bench_mels.py [--mels 40,80] [--repeats 2] [--steps 5]

The demo's batch (256 crops of 2 s, small TDNN, one thread), random audio; one warm-up step per model is
left out. Each mel count is measured ``repeats`` times, interleaved, so a drifting machine shows as spread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ssps.config import load_config
from ssps.train.run import Run

REPO = Path(__file__).resolve().parents[1]


def step_seconds(n_mels: int, steps: int, manifest: str) -> float:
    overrides = [f"data.train_manifest={manifest}", "data.val_trials=", f"features.n_mels={n_mels}"]
    cfg = load_config(REPO / "configs" / "simclr.yaml", overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp), torch.device("cpu"))
    method, opt = run.method, run.optimizer
    x = torch.randn(2 * cfg.train.batch_size, int(cfg.method.simclr.crop_seconds * cfg.features.sample_rate))
    total = 0.0
    for i in range(steps + 1):
        t0 = time.process_time()
        z = method.projector(method.embedder.encoder(method.embedder.features(x))).chunk(2)
        loss = run.steps.loss(z[0], z[1], run.teacher_temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
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
