"""Label-free scoring back-ends, probed on one checkpoint (diagnostic; not part of the test suite).

Each back-end is fitted on the *unlabelled* training audio (the speaker column is never read) and scores a
trial list by cosine similarity after a linear map of the embeddings:

- ``cosine``: the raw embeddings (what ``ssps eval`` does).
- ``centre``: minus the training set's mean embedding.
- ``whiten``: centred, then whitened by the training set's total covariance (ZCA).
- ``aug-wccn``: centred, then whitened by the *within-utterance* covariance of augmented copies: every
  training utterance's crop is embedded clean and ``--views`` times through the training augmentation
  (reverb, noise), so that covariance spans what augmentation moves, not who speaks.
- ``aug-lda D``: the top-D directions of total against within-utterance variance (a generalised
  eigenproblem), the label-free analogue of LDA with utterances for classes.

Usage:
    python benchmarks/probe_backends.py CKPT --train data/default/train.tsv \\
        --eval-manifest data/default/dev.tsv --trials data/default/trials/dev_cross_session.txt \\
        [--views 4] [--crop 3] [--floors 1e-3,1e-2] [--out probe.json]

The shipped back-end is ``aug-wccn`` (``ssps backend``, :mod:`ssps.eval.backend`); the probe fits it from
full-utterance means where ``ssps backend`` uses the clean crops' mean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ssps.augment.compose import Augmenter
from ssps.checkpoint import load_embedder
from ssps.data.manifest import read_manifest
from ssps.data.trials import read_trials
from ssps.eval.backend import inverse_sqrt, normalise, random_crops, within_covariance
from ssps.eval.embed import Embeddings, embed_files
from ssps.eval.metrics import eer, min_dcf
from ssps.eval.score import score_trials


@torch.no_grad()
def embed_crops(embedder, wavs: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate(
        [embedder(torch.from_numpy(wavs[i : i + batch])).numpy() for i in range(0, len(wavs), batch)]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--train", required=True, help="unlabelled training manifest (speaker column not read)")
    ap.add_argument("--eval-manifest", required=True)
    ap.add_argument("--trials", required=True, nargs="+")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--crop", type=float, default=3.0)
    ap.add_argument(
        "--floors", default="1e-3", help="eigenvalue floors, relative to the largest (comma list)"
    )
    ap.add_argument("--lda-dims", default="32,64,128")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)

    embedder, cfg = load_embedder(args.checkpoint)
    rate = cfg.features.sample_rate
    train = read_manifest(args.train)
    train_paths = [train.resolve(i) for i in range(len(train))]
    rng = np.random.default_rng(args.seed)
    clean = np.stack(random_crops(train_paths, args.crop, rate, rng))  # the corpus: all >= 3 s
    aug = Augmenter(cfg.data.augment, sample_rate=rate, train_paths=train_paths, seed=args.seed)
    views = [embed_crops(embedder, clean)]
    for _ in range(args.views):
        views.append(embed_crops(embedder, np.stack([aug(w, rng) for w in clean])))
    v = np.stack([normalise(e) for e in views])  # (V+1, N, D), on the sphere as scoring sees them
    within = within_covariance(v)

    ev = read_manifest(args.eval_manifest)
    ids = [r.utterance for r in ev.rows]
    _, x_eval = embed_files(embedder, [ev.resolve(i) for i in range(len(ev))], ids, progress=False)
    _, x_train = embed_files(embedder, train_paths, [r.utterance for r in train.rows], progress=False)
    xt = normalise(x_train)
    mu = xt.mean(0)
    total = np.cov((xt - mu).T, bias=True)
    maps = {"cosine": None, "centre": np.eye(len(mu))}
    for floor in (float(f) for f in args.floors.split(",")):
        maps[f"whiten {floor:g}"] = inverse_sqrt(total, floor)
        maps[f"aug-wccn {floor:g}"] = w_is = inverse_sqrt(within, floor)
        vals, vecs = np.linalg.eigh(w_is @ total @ w_is)
        for d in (int(s) for s in args.lda_dims.split(",") if s):
            maps[f"aug-lda {d} {floor:g}"] = w_is @ vecs[:, ::-1][:, :d]

    results = {}
    for name, m in maps.items():
        y = normalise(x_eval) if m is None else (normalise(x_eval) - mu) @ m
        table = Embeddings(ids, y.astype(np.float32))
        for tpath in args.trials:
            t = read_trials(tpath)
            s = score_trials(table, t)
            results.setdefault(Path(tpath).stem, {})[name] = {
                "eer": round(100 * eer(s, t.labels), 2),
                "min_dcf_0.05": round(min_dcf(s, t.labels, p_target=0.05), 4),
            }
    for lst, rows in results.items():
        print(lst)
        for name, r in rows.items():
            print(f"  {name:20s} EER {r['eer']:6.2f} %  minDCF(0.05) {r['min_dcf_0.05']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
