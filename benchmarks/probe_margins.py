"""Which label-free signal tells a right knn pseudo-positive from a wrong one? A probe without training.

    python benchmarks/probe_margins.py CHECKPOINT [OTHER_CHECKPOINT ...] --corpus DIR

From the first model's clean 4 s reference embeddings of every training utterance, each anchor's 3 nearest
utterances outside its channel-fingerprint cluster (K = N / 8, as ``configs/simclr_ssps.yaml``) are the
candidates. Each signal ranks the candidates; the table gives the share of right-speaker candidates among
the top 75 / 50 / 25 % of them, and the wrong ones left per anchor. Signals: the raw cosine; the margin
to the anchor's k-th nearest allowed utterance (``ssps.margin_keep``); the cosine z-scored over the
anchor's 40 nearest; and, per other checkpoint, agreement (the candidate is also among that model's k
nearest). Labels are read only to score: a diagnostic, never a selection rule (choices are made on dev).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from probe_sampler import reference_embeddings

from ssps.config import load_config
from ssps.data.manifest import read_manifest
from ssps.sampling.ssps import SSPSSampler

SHARES = (0.75, 0.5, 0.25)


def channel_clusters(emb: torch.Tensor, stats: torch.Tensor) -> np.ndarray:
    """(N,) the channel-fingerprint clusters the training sampler would make (its own ``cluster``)."""
    cfg = load_config(overrides=["ssps.enabled=true", "ssps.sampling=knn", "ssps.exclude_same_channel=true"])
    n = emb.shape[0]
    sampler = SSPSSampler(cfg.ssps, n, emb.shape[1], (emb.shape[1],))
    sampler.write_reference(torch.arange(n), emb)
    sampler.write_channel(torch.arange(n), stats)
    sampler.cluster(seed=0)
    return sampler.channel_assignments.numpy()


def allowed_cosines(emb: torch.Tensor, channel: np.ndarray) -> np.ndarray:
    """(N, N) float64 cosines, -inf for the utterance itself and its channel cluster."""
    e = F.normalize(emb.double(), dim=1)
    s = (e @ e.T).numpy()
    s[channel[:, None] == channel[None, :]] = -np.inf
    return s


def row(name: str, score: np.ndarray, right: np.ndarray) -> str:
    cells = []
    for share in SHARES:
        keep = score >= np.quantile(score, 1 - share)
        cells.append(f"{100 * right[keep].mean():.1f} % / {100 * (keep & ~right).mean():.1f} %")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--candidates", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    manifest = read_manifest(args.corpus / "train.tsv")
    speakers = np.array(manifest.labels("speaker")[1])
    embs, stats = [], None
    for checkpoint in args.checkpoints:
        emb, stats = reference_embeddings(checkpoint, manifest, 4.0)
        embs.append(emb)
    channel = channel_clusters(embs[0], stats)
    sims = [allowed_cosines(e, channel) for e in embs]
    k = args.candidates
    ranked = -np.sort(-sims[0], axis=1)
    top = np.argsort(-sims[0], axis=1)[:, :k]
    cos = ranked[:, :k]
    right = speakers[top] == speakers[:, None]
    n = len(manifest)
    print(f"{args.checkpoints[0]}: {n} anchors x {k} candidates, {100 * right.mean():.1f} % right")
    heads = [f"top {int(100 * s)} %: right / wrong per anchor" for s in SHARES]
    print("| signal | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(SHARES))
    print(row("raw cosine", cos.ravel(), right.ravel()))
    for rank in (5, 10, 20, 40):
        print(row(f"margin to the {rank}th", (cos - ranked[:, rank - 1 : rank]).ravel(), right.ravel()))
    mu, sd = ranked[:, :40].mean(1, keepdims=True), ranked[:, :40].std(1, keepdims=True)
    print(row("z-score over the 40 nearest", ((cos - mu) / sd).ravel(), right.ravel()))
    for checkpoint, other in zip(args.checkpoints[1:], sims[1:], strict=True):
        theirs = np.argsort(-other, axis=1)
        for depth in (3, 10):
            agree = (top[:, :, None] == theirs[:, None, :depth]).any(2).ravel()
            kept = agree.mean()
            print(
                f"| agreement with {checkpoint.parent.name} (its {depth} nearest) | "
                f"keeps {100 * kept:.0f} %: "
                f"{100 * right.ravel()[agree].mean():.1f} % right, "
                f"{100 * (agree & ~right.ravel()).mean():.1f} % wrong per anchor | | |"
            )


if __name__ == "__main__":
    main()
