"""``ssps data ...``: corpus synthesis, corpus statistics and preparation of real datasets."""

from __future__ import annotations

import argparse

from ssps.corpus import stats, synth
from ssps.data import prepare


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="make or prepare datasets (manifests and trial lists)")
    data_sub = parser.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synth.register(data_sub)
    stats.register(data_sub)
    prepare.register(data_sub)
