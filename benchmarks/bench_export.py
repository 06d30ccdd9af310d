"""Latency of one 4 s utterance on CPU: PyTorch eager vs TorchScript vs ONNX Runtime, per encoder.

Usage:
    .venv/bin/python benchmarks/bench_export.py [--encoders tdnn resnet34_thin ...] [--seconds 4.0]
        [--repeats 20] [--threads 1] [--out FILE.json]

For each registered encoder (default width, random weights: latency does not depend on their values)
a checkpoint is written to a temporary folder and exported with ``ssps export`` to both formats. Each
backend embeds the same (1, N) waveform, front end included: eager = ``Embedder`` (torch.stft), eager
conv = the module that gets exported (conv-DFT front end) run eagerly, then the exported files. Median of
``--repeats`` rounds after 3 warm-ups; the backends alternate within each round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ssps.checkpoint import load_embedder, save_checkpoint
from ssps.config import load_config
from ssps.embedder import Embedder
from ssps.encoders import ENCODERS
from ssps.export.formats import ExportModel, export_checkpoint
from ssps.export.runtime import ExportedModel
from ssps.utils.files import atomic_write_text

WARMUP = 3


def interleaved_median_ms(calls: dict, repeats: int) -> dict[str, float]:
    """Median wall time per call, in ms. The backends take turns in every round, so a load change on a
    shared machine hits them alike instead of whichever was being measured then."""
    for call in calls.values():
        for _ in range(WARMUP):  # first calls allocate and pick kernels (ORT: also plans the graph)
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def bench_encoder(name: str, folder: Path, wav: torch.Tensor, repeats: int) -> dict:
    cfg = load_config(overrides=[f"encoder.name={name}"])
    ckpt = folder / f"{name}.pt"
    save_checkpoint(ckpt, cfg, Embedder(cfg).state_dict())
    embedder, _ = load_embedder(ckpt)
    row = {"encoder": name, "parameters": sum(p.numel() for p in embedder.parameters())}
    conv = ExportModel(embedder)
    calls = {"eager": lambda: embedder(wav), "eager_conv": lambda: conv(wav)}
    for fmt, suffix in (("torchscript", ".jit.pt"), ("onnx", ".onnx")):
        start = time.perf_counter()
        export_checkpoint(ckpt, folder / f"{name}{suffix}", fmt)
        row[f"{fmt}_export_s"] = round(time.perf_counter() - start, 1)
        model = ExportedModel(folder / f"{name}{suffix}")
        calls[fmt] = lambda m=model: m(wav)
    with torch.inference_mode():
        row.update({f"{k}_ms": v for k, v in interleaved_median_ms(calls, repeats).items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=ENCODERS.names(), choices=ENCODERS.names())
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # ExportedModel gives onnxruntime the same thread count
    torch.manual_seed(0)
    wav = 0.1 * torch.randn(1, int(args.seconds * 16000))
    print(f"{args.seconds:g} s utterance, {args.threads} thread(s), median of {args.repeats}")
    print("| encoder | parameters | eager | eager, conv front end | TorchScript | ONNX Runtime |")
    print("|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.encoders:
            r = bench_encoder(name, Path(tmp), wav, args.repeats)
            rows.append(r)
            times = " | ".join(
                f"{r[f'{k}_ms']:.1f} ms" for k in ("eager", "eager_conv", "torchscript", "onnx")
            )
            print(f"| {name} | {r['parameters'] / 1e6:.2f} M | {times} |", flush=True)
    if args.out:
        atomic_write_text(args.out, json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
