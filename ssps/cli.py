"""The ``ssps`` command line. Each stage lives in its own module with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ssps.errors import PeerLostError, SSPSError

# Modules that add sub-commands; each defines register(subparsers).
COMMAND_MODULES = [
    "ssps.data.commands",
    "ssps.train.commands",
    "ssps.eval.commands",
    "ssps.eval.backend",
    "ssps.export.commands",
    "ssps.info",
    "ssps.demo.commands",
    "ssps.demo.pool",
    "ssps.pseudo.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssps", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except SSPSError as e:
        print(f"ssps {args.command}: error: {e}", file=sys.stderr)
        if isinstance(e, PeerLostError):
            # The process group's C++ threads still wait on the dead peer: a normal exit would abort
            # ("terminate called without an active exception", code -6) instead of returning 2.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except KeyboardInterrupt:
        print(f"ssps {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
