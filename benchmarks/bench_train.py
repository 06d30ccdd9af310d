"""Training throughput per encoder on this machine (SimCLR step: 2 x 2 s crops), next to loader-only
throughput (read + crop + augment + collate), and the SSPS per-step overhead (queue writes + sampling).

    python benchmarks/bench_train.py --manifest data/default/train.tsv [--threads 1] [--out bench_train.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ssps.config import load_config
from ssps.data.dataset import EpochBatchSampler, TrainDataset, collate
from ssps.data.manifest import read_manifest
from ssps.methods import build_method
from ssps.sampling.ssps import SSPSSampler
from ssps.train.run import build_views

# (encoder, batch size): the big encoders get small batches so that a step stays a few seconds on a CPU.
CASES = [("tdnn", 128), ("resnet34_thin", 32), ("ecapa_tdnn_512", 16), ("ecapa_tdnn", 8)]


def loader_rate(cfg, manifest, batch: int, steps: int) -> float:
    rows = list(range(len(manifest)))
    dataset = TrainDataset(manifest, build_views(cfg, [str(manifest.resolve(i)) for i in rows[:200]]), seed=0)
    sampler = EpochBatchSampler(rows, batch, seed=0, epoch=0, steps=steps)
    t0 = time.perf_counter()
    for keys in sampler:
        collate([dataset[k] for k in keys])
    return steps * batch / (time.perf_counter() - t0)


def step_rate(cfg, batch: int, steps: int) -> float:
    method = build_method(cfg)
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    views = [torch.randn(batch, 32000), torch.randn(batch, 32000)]
    for i in range(steps + 1):
        if i == 1:  # the first step warms up allocators and kernels
            t0 = time.perf_counter()
        a, p = method.embed(views)
        loss = method.loss(a, p)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def ssps_overhead(batch: int, num_items: int, dim: int, repeats: int = 50) -> float:
    """Seconds per step for the sampler's three calls (knn over sessions, as the built-in configs)."""
    cfg = load_config("configs/simclr_ssps.yaml").ssps
    sessions = torch.arange(num_items) // 8
    s = SSPSSampler(cfg, num_items, dim, (dim,), session_ids=sessions)
    idx = torch.arange(num_items)
    s.write_reference(idx, torch.randn(num_items, dim))
    s.write_positive(
        idx[-cfg.positive_queue_size :], torch.randn(min(num_items, cfg.positive_queue_size), dim)
    )
    s.cluster()
    t0 = time.perf_counter()
    for step in range(repeats):
        anchors = torch.randint(0, num_items, (batch,))
        s.write_reference(anchors, torch.randn(batch, dim))
        s.write_positive(anchors, torch.randn(batch, dim))
        s.sample(anchors, step)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", default="data/default/train.tsv")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", help="write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = read_manifest(args.manifest)
    results = {"threads": args.threads, "torch": torch.__version__, "encoders": {}}
    print(f"| encoder | batch | train step utt/s | loader-only utt/s | ({args.threads} thread(s)) |")
    print("|---|---|---|---|")
    for name, batch in CASES:
        n_mels = 80 if name.startswith("ecapa") else 40
        cfg = load_config(
            "configs/simclr.yaml",
            [
                f"encoder.name={name}",
                "encoder.embed_dim=512",
                "encoder.channels=0",
                f"features.n_mels={n_mels}",
            ],
        )
        train = step_rate(cfg, batch, args.steps)
        load = loader_rate(cfg, manifest, batch, args.steps)
        results["encoders"][name] = {"batch": batch, "train_utt_per_s": train, "loader_utt_per_s": load}
        print(f"| {name} | {batch} | {train:.1f} | {load:.1f} |", flush=True)
    cfg = load_config("configs/simclr.yaml")
    step = 128 / step_rate(cfg, 128, args.steps)
    over = ssps_overhead(128, len(manifest), cfg.encoder.embed_dim)
    results["ssps"] = {"step_seconds_tdnn_128": step, "sampler_seconds": over, "fraction": over / step}
    print(
        f"SSPS sampler calls: {1000 * over:.2f} ms per step = {100 * over / step:.2f} % of a tdnn step "
        f"({step:.2f} s, batch 128, {len(manifest)} utterances)"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
