"""Rank-aware logging: messages and metrics from rank 0 only, to stderr, a JSONL file and TensorBoard."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from ssps import dist

log = logging.getLogger("ssps")


def setup_logging(out_dir: Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr (and ``out_dir/train.log``) on rank 0; other ranks log warnings only."""
    log.handlers.clear()
    log.propagate = False
    log.setLevel(level if dist.is_main() else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    log.addHandler(handler)
    if out_dir is not None and dist.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(out_dir / "train.log")
        file_handler.setFormatter(fmt)
        log.addHandler(file_handler)


class MetricsWriter:
    """Append one JSON object per record to ``metrics.jsonl`` and mirror scalars to TensorBoard."""

    def __init__(self, out_dir: Path, tensorboard: bool = True):
        self.enabled = dist.is_main()
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if self.enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional at run time
                log.warning("tensorboard is not installed; writing metrics.jsonl only")

    def write(self, kind: str, step: int, values: dict) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
