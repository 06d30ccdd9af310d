"""Time EER + minDCF(0.01) + minDCF(0.05) on a VoxCeleb1-E-sized trial list (579,818 trials).

Usage: python benchmarks/bench_metrics.py [--repeats 5]
Prints the best wall time of the three calls together (target: under 1 s) and the numpy version.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from ssps.eval.metrics import eer, min_dcf

N_TRIALS = 579_818  # VoxCeleb1-E


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the shared machine: keep the numbers comparable and polite
    rng = np.random.default_rng(0)
    labels = rng.random(N_TRIALS) < 0.5
    # float32 cosine-like scores: realistic resolution, so some ties occur as in real score files.
    scores = np.clip(rng.normal(0.2 + 0.4 * labels, 0.15), -1, 1).astype(np.float32)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        e = eer(scores, labels)
        d1 = min_dcf(scores, labels, p_target=0.01)
        d5 = min_dcf(scores, labels, p_target=0.05)
        times.append(time.perf_counter() - t0)
    print(f"trials {N_TRIALS}  distinct scores {np.unique(scores).size}")
    print(f"EER {100 * e:.4f}%  minDCF(p=0.01) {d1:.4f}  minDCF(p=0.05) {d5:.4f}")
    print(
        f"eer + min_dcf(0.01) + min_dcf(0.05): best {min(times):.3f} s, median {np.median(times):.3f} s "
        f"over {args.repeats} runs"
    )
    print(f"numpy {np.__version__}  python {platform.python_version()}  cpu {platform.processor() or '?'}")


if __name__ == "__main__":
    main()
