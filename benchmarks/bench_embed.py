"""``ssps embed`` on a generated 1,000-utterance manifest of mixed lengths: one utterance at a time (what
mixed lengths got before: only equal-length files shared a batch) vs sorted, padded batches with lengths.

    python benchmarks/bench_embed.py [--utterances 1000] [--encoder tdnn] [--batch-size 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ssps.config import load_config
from ssps.embedder import Embedder
from ssps.eval.embed import embed_files

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=1000)
    parser.add_argument("--seconds", type=float, nargs=2, default=(1.0, 8.0), help="duration range")
    parser.add_argument("--encoder", default="tdnn")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(REPO / "configs" / "simclr.yaml", [f"encoder.name={args.encoder}"])
    model = Embedder(cfg).eval()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.utterances):
            n = int(rng.uniform(*args.seconds) * 16000)
            paths.append(Path(tmp) / f"{i:05d}.wav")
            sf.write(paths[-1], (0.1 * rng.standard_normal(n)).astype(np.float32), 16000, subtype="PCM_16")
        ids = [p.stem for p in paths]
        times, out = {}, {}
        for name, batch in (("one at a time", 1), (f"batched ({args.batch_size}, padded)", args.batch_size)):
            t0 = time.perf_counter()
            out[name] = embed_files(model, paths, ids, batch_size=batch, progress=False)[1]
            times[name] = time.perf_counter() - t0
    a, b = out.values()
    diff = float(np.abs(a - b).max())
    print(
        f"| {args.utterances} utterances, {args.seconds[0]:g}-{args.seconds[1]:g} s, {args.encoder}, "
        f"{args.threads} thread(s) | wall s | utt/s |\n|---|---|---|"
    )
    for name, t in times.items():
        print(f"| {name} | {t:.1f} | {args.utterances / t:.0f} |")
    first, second = times.values()
    print(f"speed-up {first / second:.2f}x; max |difference| of the embeddings {diff:.2g}")


if __name__ == "__main__":
    main()
