"""The demo step's floor at bit-equal results: the arithmetic a step cannot skip without changing its output.

    python benchmarks/bench_step_floor.py [--baseline c18bddd] [--steps 5] [--set features.n_mels=80]

CPU seconds per step, one thread, on the demo's SimCLR batch (128 utterances, two 2 s views each):

- encoder forward + backward + optimizer step (the TDNN through oneDNN, the fastest of the CPU paths:
  benchmarks/bench_conv_paths.py);
- the reverberation's FFT pair per view (pocketfft rfft of the crop and irfft of its product with the
  room's cached spectrum, at the size ``fftconvolve`` picks: a different size or library changes the bits);
- the front end's STFT of the batch (torch.stft).

Everything else in a step (reading, cropping, noise, mel, log, normalising, collating) is left out, as if it
cost nothing. Printed beside the baseline tree's whole step (``bench_demo_step.py``'s CPU profile): the
largest speed-up any bit-equal data path could reach on this machine is baseline / floor.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.fft
import torch
from bench_demo_step import checkout, cpu_profile

REPO = Path(__file__).resolve().parents[1]


def simclr_run(manifest: Path | str, overrides: tuple[str, ...] = (), config: Path | None = None):
    """The demo's SimCLR training run (``config``, default configs/simclr.yaml) on ``manifest``, on the
    CPU, no validation."""
    from ssps.config import load_config
    from ssps.train.run import Run

    cfg = load_config(
        config or REPO / "configs" / "simclr.yaml",
        [f"data.train_manifest={manifest}", "data.val_trials=", *overrides],
    )
    with tempfile.TemporaryDirectory() as tmp:
        return Run(cfg, Path(tmp), torch.device("cpu"))


def train_step(run, feats: torch.Tensor) -> None:
    """Encoder forward on (2B, T, F) features, SimCLR loss of the two views, backward, optimizer step."""
    z = run.method.projector(run.method.embedder.encoder(feats)).chunk(2)
    loss = run.steps.loss(z[0], z[1], run.teacher_temperature)
    run.optimizer.zero_grad()
    loss.backward()
    run.optimizer.step()


def floor(manifest: Path, steps: int, settings: tuple[str, ...] = ()) -> dict[str, float]:
    from ssps.augment.compose import Augmenter

    torch.set_num_threads(1)
    run = simclr_run(manifest, settings)
    cfg, method = run.cfg, run.method
    front = method.embedder.features
    views, n = 2 * cfg.train.batch_size, int(cfg.method.simclr.crop_seconds * cfg.features.sample_rate)
    rng = np.random.default_rng(0)
    wav = rng.standard_normal((views, n)).astype(np.float32)
    rirs = Augmenter(cfg.data.augment).rirs
    sizes = [scipy.fft.next_fast_len(n + len(rirs.get(i)) - 1, True) for i in range(len(rirs))]
    spectra = {m: scipy.fft.rfftn(np.ones(8, np.float32), [m], axes=[0]) for m in set(sizes)}
    parts = ["encoder forward + backward + step", "reverb FFTs", "STFT"]
    clock, t = time.process_time, dict.fromkeys(parts, 0.0)
    method.train()
    for i in range(steps + 1):  # step 0 warms up (allocations, oneDNN primitives): not counted
        t0 = clock()
        for v in range(views):
            m = sizes[int(rng.integers(len(sizes)))]
            scipy.fft.irfftn(scipy.fft.rfftn(wav[v], [m], axes=[0]) * spectra[m], [m], axes=[0])
        t1 = clock()
        x = torch.from_numpy(wav)
        torch.stft(
            x, front.n_fft, front.hop_length, front.win_length, front.window, center=True, return_complex=True
        )
        t2 = clock()
        feats = front(x)
        t3 = clock()
        train_step(run, feats)
        t4 = clock()
        if i:
            t["reverb FFTs"] += (t1 - t0) / steps
            t["STFT"] += (t2 - t1) / steps
            t["encoder forward + backward + step"] += (t4 - t3) / steps
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", default="c18bddd", help="git revision of the 'before' tree (issue 11)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--manifest", default="data/default/train.tsv")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for both trees (repeatable)",
    )
    p.add_argument("--out", help="write the figures as JSON")
    args = p.parse_args()
    manifest = Path(args.manifest).resolve()
    settings = tuple(args.set)
    parts = floor(manifest, args.steps, settings)
    with tempfile.TemporaryDirectory() as tmp:
        tree = checkout(args.baseline, Path(tmp) / "baseline")
        before = cpu_profile(tree, manifest, args.steps, "simclr.yaml", settings)
        after = cpu_profile(REPO, manifest, args.steps, "simclr.yaml", settings)
    total = {"floor": sum(parts.values()), "before": sum(before.values()), "after": sum(after.values())}
    print("| part of a step (CPU s, 1 thread) | s |\n|---|---|")
    for k, v in parts.items():
        print(f"| {k} | {v:.3f} |")
    print(f"| **floor** (sum) | {total['floor']:.3f} |")
    print(f"| whole step, before ({args.baseline}) | {total['before']:.3f} |")
    print(f"| whole step, this tree | {total['after']:.3f} |")
    print(
        f"largest bit-equal speed-up: {total['before'] / total['floor']:.2f}x "
        f"(this tree: {total['before'] / total['after']:.2f}x; "
        f"2x needs a step of {total['before'] / 2:.3f} s)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"parts": parts, "before": before, "after": after}, indent=2))


if __name__ == "__main__":
    main()
