"""``ssps export``: a checkpoint's embedder as an ONNX or TorchScript file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssps.errors import SSPSError

SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".jit": "torchscript"}


def cmd_export(args: argparse.Namespace) -> int:
    from ssps.export.formats import describe, export_checkpoint

    out = Path(args.out)
    fmt = args.format or SUFFIXES.get(out.suffix)
    if fmt is None:
        raise SSPSError(
            f"--out {out}: cannot tell the format from the suffix; give --format onnx|torchscript"
        )
    meta = export_checkpoint(args.checkpoint, out, fmt, from_features=args.from_features)
    print(f"{meta['method']} {meta['encoder']} from {args.checkpoint} -> {out} ({fmt})")
    print(describe(meta))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint's encoder (with its front end) to ONNX or TorchScript"
    )
    p.add_argument("checkpoint", help="any ssps checkpoint: latest.pt, epoch_NNNN.pt, averaged.pt")
    p.add_argument("--format", choices=["onnx", "torchscript"], help="default: from the --out suffix")
    p.add_argument("--out", required=True, help="output file (.onnx, or .pt for TorchScript)")
    p.add_argument(
        "--from-features",
        action="store_true",
        help="export the encoder alone: input (batch, frames, n_mels) log-mel features, not waveforms",
    )
    p.set_defaults(func=cmd_export)
