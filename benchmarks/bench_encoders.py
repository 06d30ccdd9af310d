"""Forward+backward time per registered encoder (and the log-mel front end) on CPU.

Usage:
    .venv/bin/python benchmarks/bench_encoders.py [--batch 8] [--seconds 2.0] [--repeats 3] [--out FILE.json]

Prints one line per encoder: parameters, and the median wall time of a train-mode forward and
backward pass on a batch of ``--seconds`` crops (features computed once, outside the timing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ssps.audio.features import LogMelFrontEnd
from ssps.encoders import ENCODERS
from ssps.utils.files import atomic_write_text


def _median_seconds(step, repeats: int) -> float:
    step()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--n-mels", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--names", nargs="*", default=ENCODERS.names())
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    front = LogMelFrontEnd(n_mels=args.n_mels)
    wav = torch.randn(args.batch, int(args.seconds * front.sample_rate))
    with torch.no_grad():
        front_s = _median_seconds(lambda: front(wav), args.repeats)
        feats = front(wav)  # (B, T, F)
    rows = [{"name": "logmel_front_end", "params": 0, "seconds": front_s}]
    print(f"batch {args.batch} x {args.seconds} s ({feats.shape[1]} frames), {args.threads} thread(s)")
    print(f"{'logmel_front_end':16s} {'-':>11s} forward {front_s * 1000:9.1f} ms")
    for name in args.names:
        model = ENCODERS.get(name)(n_mels=args.n_mels).train()
        params = sum(p.numel() for p in model.parameters())

        def step(model=model):
            model.zero_grad(set_to_none=True)
            model(feats).square().mean().backward()

        seconds = _median_seconds(step, args.repeats)
        rows.append({"name": name, "params": params, "seconds": seconds})
        print(f"{name:16s} {params:11,d} fwd+bwd {seconds * 1000:9.1f} ms")
    if args.out:
        atomic_write_text(args.out, json.dumps({"args": vars(args), "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
