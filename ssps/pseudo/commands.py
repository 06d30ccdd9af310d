"""``ssps pseudo-label`` and ``ssps chain``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pseudo-label",
        help="cluster a model's embeddings of a training manifest into pseudo-speakers (label-free)",
    )
    p.add_argument("checkpoint", help="any ssps checkpoint")
    p.add_argument("--manifest", required=True, help="training manifest to label (its speakers are not read)")
    p.add_argument("--out", required=True, help="folder for embeddings.npz, train.tsv and quality.json")
    p.add_argument("--clusters", type=int, help="K of the first-stage k-means (default N / 20)")
    p.add_argument("--criterion", choices=["silhouette", "threshold", "count"], help="how S is chosen")
    p.add_argument("--speakers", type=int, help="criterion=count: number of pseudo-speakers")
    p.add_argument("--min-speakers", dest="min_speakers", type=int, help="silhouette search: lowest S")
    p.add_argument("--max-speakers", dest="max_speakers", type=int, help="silhouette search: highest S")
    p.add_argument("--threshold", type=float, help="criterion=threshold: cosine distance to stop merging")
    p.add_argument("--iterations", type=int, help="k-means iterations (default 10)")
    p.add_argument("--backend", choices=["torch", "faiss"], help="k-means backend")
    p.add_argument(
        "--session-metadata",
        dest="session_metadata",
        action="store_true",
        default=None,
        help="use the session column (recording metadata): one pseudo-speaker per recording",
    )
    p.add_argument(
        "--channel-groups",
        dest="channel_groups",
        type=int,
        help="label-free: pool the embeddings of G groups of alike channel fingerprints (recordings)",
    )
    p.add_argument(
        "--keep",
        type=float,
        help="write only this share of each pseudo-speaker's utterances, the closest to its mean (default 1)",
    )
    p.add_argument(
        "--wccn",
        action="store_true",
        default=None,
        help="label-free: cluster after the augmentation-WCCN back-end (ssps backend), fitted on this audio",
    )
    p.add_argument(
        "--pitch",
        type=float,
        help="label-free: weight in [0, 1) of each utterance's median F0 beside its embedding (default 0)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=run_pseudo_label)

    c = sub.add_parser("chain", help="SSL checkpoint -> pseudo-labels -> supervised, for N rounds")
    c.add_argument("config", help="chain YAML (see configs/chain.yaml)")
    c.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. rounds=3 pseudo.clusters=500")
    c.add_argument("--out", help="chain folder (default: runs/<config name>)")
    c.set_defaults(func=run_chain_command)


def run_pseudo_label(args: argparse.Namespace) -> int:
    from ssps.eval.commands import resolve_device
    from ssps.pseudo.labelling import pseudo_label, settings_from_args

    report = pseudo_label(
        args.checkpoint,
        args.manifest,
        args.out,
        settings_from_args(args),
        device=str(resolve_device(args.device)),
        batch_size=args.batch_size,
    )
    line = f"{report['utterances']} utterances -> {report['num_pseudo_speakers']} pseudo-speakers"
    if "quality" in report:
        q = report["quality"]
        line += (
            f" (NMI {q['nmi']:.3f}, purity {q['purity']:.3f}, pairwise P/R "
            f"{q['pairwise_precision']:.3f}/{q['pairwise_recall']:.3f} vs {q['num_speakers']} speakers)"
        )
    print(f"{line} -> {Path(args.out) / 'train.tsv'}")
    return 0


def run_chain_command(args: argparse.Namespace) -> int:
    from ssps.pseudo.chain import load_chain_config, run_chain

    chain = load_chain_config(args.config, list(args.overrides))
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    try:
        summary = run_chain(chain, out)
    finally:
        from ssps import dist

        dist.shutdown()
    print(json.dumps(summary, indent=2))
    return 0
