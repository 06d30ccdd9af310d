"""Average the embedder weights of several checkpoints (the paper's final model: the last 10 epochs)."""

from __future__ import annotations

from pathlib import Path

from ssps.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from ssps.errors import SSPSError


def average_checkpoints(paths: list[Path], out: Path) -> None:
    """Mean of floating-point tensors; integer buffers (BatchNorm counters) come from the last checkpoint."""
    first = load_checkpoint(paths[0])
    cfg = checkpoint_config(first, paths[0])
    total = {k: v.double() if v.is_floating_point() else v for k, v in first["embedder"].items()}
    last = first
    for path in paths[1:]:
        last = load_checkpoint(path)
        if last["config"] != first["config"]:
            raise SSPSError(
                f"{path}: config differs from {paths[0]}; only checkpoints of one run can be averaged"
            )
        for k, v in last["embedder"].items():
            if k not in total:
                raise SSPSError(f"{path}: unexpected weight {k!r}")
            total[k] = total[k] + v.double() if v.is_floating_point() else v
    averaged = {
        k: (v / len(paths)).to(first["embedder"][k].dtype) if v.is_floating_point() else v
        for k, v in total.items()
    }
    provenance = {**last.get("provenance", {}), "averaged_from": [p.name for p in paths]}
    save_checkpoint(out, cfg, averaged, last["epoch"], last["step"], provenance=provenance)
