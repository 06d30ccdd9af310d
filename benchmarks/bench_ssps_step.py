"""What an SSPS step adds to a SimCLR step: CPU seconds per step, one thread, the demo's batch (128).

    python benchmarks/bench_ssps_step.py [--config configs/simclr_ssps.yaml] [--steps 5]

Measured on the demo's SimCLR + SSPS run (``configs/simclr_ssps.yaml``) with its queue filled from random
4 s references: the clean reference frame's embedding (front end, then the encoder in eval mode without
gradient), its channel fingerprint (``ssps.exclude_same_channel``), the draw, the queue writes, the
same-utterance loss beside the SSPS loss (``ssps.loss_weight`` < 1), and for scale the SimCLR step's
encoder forward + backward + step on its two 2 s views. The loader's cost of cutting the reference is not
counted. ``ssps train`` keeps freed memory (``ssps.utils.memory``); so does this script.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from bench_step_floor import simclr_run, train_step

REPO = Path(__file__).resolve().parents[1]


def profile(manifest: Path, config: Path, steps: int) -> dict[str, float]:
    from ssps.sampling.channel import channel_statistics
    from ssps.train.steps import reference_embeddings
    from ssps.utils.memory import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)
    run = simclr_run(manifest, config=config)
    cfg, method, sampler = run.cfg, run.method, run.sampler
    if sampler is None:
        raise SystemExit(f"{config}: ssps.enabled is false, nothing to measure")
    sr, batch = cfg.features.sample_rate, cfg.train.batch_size
    rng = np.random.default_rng(0)
    ref = torch.from_numpy(rng.standard_normal((batch, int(cfg.ssps.reference_seconds * sr)), np.float32))
    views = torch.from_numpy(
        rng.standard_normal((2 * batch, int(cfg.method.simclr.crop_seconds * sr)), np.float32)
    )
    encoder = method.reference_encoder()
    n = len(run.dataset)
    for start in range(0, n, batch):  # the fill epoch, with random audio
        idx = torch.arange(start, min(start + batch, n))
        sampler.write_reference(idx, reference_embeddings(method, ref[: len(idx)]))
        if sampler.needs_channel:
            sampler.write_channel(idx, channel_statistics(ref[: len(idx)], sr))
        sampler.write_positive(idx, torch.randn(len(idx), *sampler.pos_shape))
    sampler.cluster(seed=0)
    laps = Laps(steps)
    for i in range(steps + 1):  # step 0 warms up (allocations, oneDNN primitives): not counted
        laps.count = i > 0
        idx = torch.from_numpy(rng.choice(n, batch, replace=False))
        method.train()
        feats = method.embedder.features(views)
        laps.start()
        train_step(run, feats)
        laps.lap("SimCLR step: encoder forward + backward + step (2 x 2 s views)")
        with torch.no_grad():
            encoder.eval()
            x = encoder.features(ref)
            laps.lap("reference: front end (4 s)")
            emb = encoder.encoder(x).float()
            laps.lap("reference: encoder forward (eval, no gradient)")
        if sampler.needs_channel:
            stats = channel_statistics(ref, sr)
            laps.lap("reference: channel fingerprint")
        drawn = sampler.sample(idx, step=i)
        laps.lap("draw (sampler.sample)")
        sampler.write_reference(idx, emb)
        if sampler.needs_channel:
            sampler.write_channel(idx, stats)
        sampler.write_positive(idx, drawn.positives.float())
        laps.lap("queue writes")
        a = torch.randn(batch, drawn.positives.shape[1], requires_grad=True)
        laps.start()
        run.steps.loss(a, drawn.positives, 0.0).backward()
        laps.lap("second loss (same utterance)")
    return laps.t


class Laps:
    """CPU seconds per counted step of each part, timed from the previous lap (or ``start``)."""

    def __init__(self, steps: int):
        self.steps, self.count, self.t = steps, False, {}
        self.last = time.process_time()

    def start(self) -> None:
        self.last = time.process_time()

    def lap(self, part: str) -> None:
        now = time.process_time()
        if self.count:
            self.t[part] = self.t.get(part, 0.0) + (now - self.last) / self.steps
        self.last = now


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "configs" / "simclr_ssps.yaml"))
    p.add_argument("--manifest", default="data/default/train.tsv")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", help="write the figures as JSON")
    args = p.parse_args()
    t = profile(Path(args.manifest).resolve(), Path(args.config), args.steps)
    base = next(v for k, v in t.items() if k.startswith("SimCLR step"))
    extra = sum(v for k, v in t.items() if not k.startswith("SimCLR step"))
    print("| part of a step (CPU s, 1 thread) | s |\n|---|---|")
    for k, v in t.items():
        print(f"| {k} | {v:.3f} |")
    print(f"| **SSPS's additions** (sum, SimCLR step left out) | {extra:.3f} |")
    print(f"SSPS adds {extra:.3f} s to the SimCLR step's encoder part ({base:.3f} s): {extra / base:.0%}")
    if args.out:
        Path(args.out).write_text(json.dumps(t, indent=2))


if __name__ == "__main__":
    main()
