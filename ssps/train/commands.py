"""``ssps train`` and ``ssps average``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssps.errors import SSPSError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an encoder (SimCLR / DINO, optionally with SSPS)")
    p.add_argument("config", help="experiment YAML (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=5")
    p.add_argument(
        "--set",
        dest="set_",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override (repeatable)",
    )
    p.add_argument("--out", help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/latest.pt")
    p.add_argument("--init", help="start from this checkpoint's weights (same as train.init=PATH)")
    p.add_argument("--stop-after-steps", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=run_train)

    a = sub.add_parser("average", help="average the weights of the last N epoch checkpoints")
    a.add_argument("run_dir", help="a training run folder holding epoch_*.pt")
    a.add_argument(
        "--last", type=int, default=10, help="how many of the latest epoch checkpoints (default 10)"
    )
    a.add_argument("--out", help="output checkpoint (default: RUN_DIR/averaged.pt)")
    a.set_defaults(func=run_average)


def run_train(args: argparse.Namespace) -> int:
    from ssps.config import load_config
    from ssps.train.trainer import train
    from ssps.utils.memory import keep_freed_memory

    keep_freed_memory()  # a training process reuses its step's memory (ssps.utils.memory)
    overrides = list(args.overrides) + list(args.set_)
    if args.init:
        overrides.append(f"train.init={args.init}")
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    try:
        train(cfg, out, resume=args.resume, stop_after_steps=args.stop_after_steps)
    finally:
        from ssps import dist

        dist.shutdown()
    return 0


def run_average(args: argparse.Namespace) -> int:
    from ssps.train.average import average_checkpoints

    run_dir = Path(args.run_dir)
    files = sorted(run_dir.glob("epoch_*.pt"))
    if not files:
        raise SSPSError(f"{run_dir}: no epoch_*.pt checkpoints to average")
    chosen = files[-args.last :]
    out = Path(args.out) if args.out else run_dir / "averaged.pt"
    average_checkpoints(chosen, out)
    print(f"averaged {len(chosen)} checkpoints ({chosen[0].name} .. {chosen[-1].name}) -> {out}")
    return 0
