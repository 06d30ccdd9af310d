"""How much does each utterance's median F0 help the pseudo-label clustering? (a dev-split probe)

For each checkpoint: embed the manifest once, measure every utterance's median F0 once, then cluster as
``ssps pseudo-label`` does (k-means to K, average linkage, S by silhouette) with pitch weights
``--weights``, and print the clusters' quality against the manifest's speakers (NMI, pairwise precision /
recall / F1) and the share of wrong same-cluster pairs that are sibling voices (the corpus's pitch- and
formant-shifted copies of one MBROLA voice: ``<voice>`` and ``<voice>-sN``). The speaker column is read
for these diagnostics only; choose the weight on a dev manifest.

    python benchmarks/probe_pitch.py runs/w/simclr_ssps_s0/latest.pt ... --manifest data/default/dev.tsv \
        --weights 0,0.1,0.2,0.3,0.5 --clusters 38 --min-speakers 3 --max-speakers 30
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np

from ssps.checkpoint import load_embedder
from ssps.data.manifest import read_manifest
from ssps.eval.embed import embed_files
from ssps.pseudo.cluster import pseudo_labels
from ssps.pseudo.labelling import settings_from_args
from ssps.pseudo.prosody import mix_pitch, utterance_pitch
from ssps.pseudo.quality import cluster_quality


def sibling_share(labels: np.ndarray, speakers: np.ndarray) -> float:
    """Share of the same-cluster pairs of different speakers whose speakers share a base voice."""
    base = np.array([re.sub(r"-s\d+$", "", s) for s in speakers])
    same = labels[:, None] == labels[None, :]
    wrong = same & (speakers[:, None] != speakers[None, :])
    return float((wrong & (base[:, None] == base[None, :])).sum() / max(wrong.sum(), 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--manifest", required=True)
    p.add_argument("--weights", default="0,0.1,0.2,0.3,0.5")
    p.add_argument("--clusters", type=int, required=True)
    p.add_argument("--min-speakers", type=int)
    p.add_argument("--max-speakers", type=int)
    p.add_argument("--criterion", choices=["silhouette", "threshold", "count"])
    p.add_argument("--speakers", type=int, help="criterion=count: the number of clusters")
    p.add_argument("--seed", type=int)
    args = p.parse_args()
    manifest = read_manifest(args.manifest)
    speakers = np.array([r.speaker for r in manifest.rows])
    paths = [manifest.resolve(i) for i in range(len(manifest))]
    ids = [r.utterance for r in manifest.rows]
    cfg = settings_from_args(args)  # the clustering flags, as ssps pseudo-label reads them
    pitch = None
    for ckpt in args.checkpoints:
        embedder, _ = load_embedder(ckpt)
        rate = embedder.features.sample_rate
        _, vectors = embed_files(embedder, paths, ids, 32, "cpu", rate)
        if pitch is None:
            pitch = utterance_pitch(paths, rate)
        for w in [float(v) for v in args.weights.split(",")]:
            x = mix_pitch(vectors, pitch, w) if w else vectors
            res = pseudo_labels(x, cfg)
            q = cluster_quality(res.labels, speakers)
            row = {
                "checkpoint": ckpt,
                "pitch": w,
                "S": res.num_speakers,
                "nmi": round(q["nmi"], 4),
                "precision": round(q["pairwise_precision"], 4),
                "recall": round(q["pairwise_recall"], 4),
                "f1": round(q["pairwise_f1"], 4),
                "sibling_share_of_wrong_pairs": round(sibling_share(res.labels, speakers), 4),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
