"""How right would SSPS's pseudo-positives be from a given model? A quick probe without training.

    python benchmarks/probe_sampler.py CHECKPOINT --corpus DIR [--set "ssps.sampling=knn ..."] ...

Embeds every training utterance's clean reference frame (as the trainer does, ``ssps.reference_seconds``),
fills an SSPS sampler's queues with them, clusters, draws one pseudo-positive per utterance and reports, per
sampler setting: coverage, speaker accuracy and same-session rate of the draws (labels are read here only
to score the draws), and the clusters' NMI against speakers and sessions. Each ``--set`` is one setting: a
space-separated list of ``ssps.*`` overrides. A filter, not a verdict: the EER after training decides.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ssps.audio.io import fixed_crop, load_audio
from ssps.checkpoint import load_embedder
from ssps.config import load_config
from ssps.data.manifest import read_manifest
from ssps.sampling.channel import channel_statistics
from ssps.sampling.diagnostics import cluster_diagnostics, sampling_diagnostics
from ssps.sampling.ssps import SSPSSampler, uses_labels, uses_sessions

COLUMNS = ("coverage", "speaker_accuracy", "same_session_rate", "nmi_speaker", "nmi_session")


@torch.no_grad()
def reference_embeddings(
    checkpoint: Path, manifest, seconds: float, batch: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) embeddings and (N, C) channel statistics of every utterance's clean reference frame."""
    embedder, cfg = load_embedder(checkpoint)
    n = int(round(seconds * cfg.features.sample_rate))
    emb, stats = [], []
    for start in range(0, len(manifest), batch):
        wavs = [
            fixed_crop(load_audio(manifest.resolve(i), cfg.features.sample_rate), n)
            for i in range(start, min(start + batch, len(manifest)))
        ]
        x = torch.from_numpy(np.stack(wavs))
        emb.append(embedder(x).float())
        stats.append(channel_statistics(x, cfg.features.sample_rate))
    return torch.cat(emb), torch.cat(stats)


def probe(
    ref: torch.Tensor,
    stats: torch.Tensor,
    overrides: list[str],
    speakers: torch.Tensor,
    sessions: torch.Tensor,
    copies: int = 1,
) -> dict:
    cfg = load_config(overrides=["ssps.enabled=true", "ssps.queue_dtype=float32", *overrides]).ssps
    n = ref.shape[0]
    cfg = type(cfg)(**{**cfg.__dict__, "positive_queue_size": max(cfg.positive_queue_size, copies * n)})
    s = SSPSSampler(
        cfg,
        n,
        ref.shape[1],
        (ref.shape[1],),
        speaker_ids=speakers if uses_labels(cfg) else None,
        session_ids=sessions if uses_sessions(cfg) else None,
    )
    idx = torch.arange(n)
    s.write_reference(idx, ref)
    if s.needs_channel:
        s.write_channel(idx, stats)
    s.write_positive(idx.repeat(copies), ref.repeat(copies, 1))
    t0 = time.perf_counter()
    s.cluster(seed=0)
    res = s.sample(idx, step=0)
    out = {"setting": " ".join(overrides), "seconds": round(time.perf_counter() - t0, 2)}
    out |= sampling_diagnostics(idx, res.source_indices, res.found, speakers, sessions)
    if s.assignments.max() >= 0:
        out |= cluster_diagnostics(s.assignments, speakers, sessions)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--set", action="append", default=[], help="one sampler setting (ssps.* overrides)")
    p.add_argument("--reference-seconds", type=float, default=4.0)
    p.add_argument(
        "--queue-copies",
        type=int,
        default=1,
        help="each utterance this many times in the positive queue, as in training (the demo: 2-3)",
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    manifest = read_manifest(args.corpus / f"{args.split}.tsv")
    speakers = torch.tensor(manifest.labels("speaker")[1])
    sessions = torch.tensor(manifest.labels("session")[1])
    ref, stats = reference_embeddings(args.checkpoint, manifest, args.reference_seconds)
    rows = []
    print("| setting | coverage | speaker acc. | same session | NMI spk | NMI sess |")
    print("|---|---|---|---|---|---|")
    for setting in args.set or ["ssps.sampling=knn"]:
        r = probe(ref, stats, setting.split(), speakers, sessions, args.queue_copies)
        rows.append(r)
        cells = [f"{100 * r[k]:.1f}" if k in r else "–" for k in COLUMNS]
        print(f"| {r['setting']} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
