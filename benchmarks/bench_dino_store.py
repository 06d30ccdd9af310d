"""What storing DINO teacher bottlenecks in float16 costs: logit error and target change (paper-size head).

Run: ``.venv/bin/python benchmarks/bench_dino_store.py`` (prints one line; a freshly initialised head).
"""

from __future__ import annotations

import torch

from ssps.methods.heads import DINOHead
from ssps.methods.losses import DINOCenter


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    head = DINOHead(512, hidden=2048, bottleneck=256, out=65536)
    with torch.no_grad():
        z = head.bottleneck(torch.randn(64, 512))  # (64, 256)
        full, half = head.last_layer(z), head.last_layer(z.half())  # (64, 65536) each
        center = DINOCenter(65536)
        p, q = center.softmax(full, 0.04), center.softmax(half, 0.04)
    error = (full - half).abs().max().item()
    tv = 0.5 * (p - q).abs().sum(-1).mean().item()
    print(f"max |logit error| {error:.2e}; mean total variation of teacher targets (t=0.04) {tv:.2e}")


if __name__ == "__main__":
    main()
