"""Checkpoints: one file with the resolved config, the evaluation embedder and, for training, all state.

Layout (plain data + tensors only, so ``torch.load(weights_only=True)`` can read it)::

    {"format": "ssps-checkpoint", "version": 1, "config": {...}, "embedder": state_dict,
     "epoch": int, "step": int, "train": {...} | None, "provenance": {...}}

``provenance`` (absent in older files) records where the weights came from: the training manifest and
its sha256, and for an averaged checkpoint the files averaged; ``ssps info`` shows it.

``embedder`` holds the weights that produce evaluation embeddings (DINO: the teacher), so any checkpoint
loads into :class:`ssps.embedder.Embedder` without knowing how it was trained.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ssps.config import Config, ConfigError, config_from_dict, to_dict
from ssps.errors import SSPSError
from ssps.utils.files import atomic_path

FORMAT = "ssps-checkpoint"
VERSION = 1


def save_checkpoint(
    path: str | Path,
    cfg: Config,
    embedder_state: dict[str, torch.Tensor],
    epoch: int = 0,
    step: int = 0,
    train_state: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write atomically: the previous file stays intact if anything fails (full disk, kill).

    ``provenance`` is plain data (strings, numbers, lists), e.g. ``{"train_manifest_sha256": ...}``.
    """
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": to_dict(cfg),
        "embedder": {k: v.detach().cpu() for k, v in embedder_state.items()},
        "epoch": epoch,
        "step": step,
        "train": train_state,
        "provenance": dict(provenance or {}),
    }
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as e:
        raise SSPSError(f"{path}: cannot write checkpoint ({e.strerror or e})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``: a file crafted to run code when unpickled is refused."""
    path = Path(path)
    if not path.is_file():
        raise SSPSError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise SSPSError(
            f"{path}: refused to load: holds objects other than plain data and tensors, which could run "
            f"code when unpickled ({_unpickler_reason(e)})"
        ) from None
    except (KeyError, IndexError):
        # What the legacy (non-zip) unpickler raises on a file that is not a pickle at all, e.g. text.
        raise SSPSError(f"{path}: not an ssps checkpoint (not a file written by torch.save)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SSPSError(f"{path}: corrupt or truncated checkpoint ({msg[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SSPSError(f"{path}: not an ssps checkpoint (no 'format: {FORMAT}' entry)")
    if ckpt.get("version") != VERSION:
        raise SSPSError(f"{path}: checkpoint version {ckpt.get('version')}, this ssps reads {VERSION}")
    return ckpt


def _unpickler_reason(error: Exception) -> str:
    # torch's message is a multi-line advice text; keep only what the restricted unpickler objected to.
    text = str(error).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0].split(" was not an allowed global")[0] if lines else "unpickling refused"
    return reason[:160]


def checkpoint_config(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> Config:
    try:
        return config_from_dict(ckpt["config"])
    except ConfigError as e:
        raise SSPSError(f"{path}: stored config does not fit this version of ssps ({e})") from None


def load_embedder(path: str | Path, device: str | torch.device = "cpu"):
    """Any ssps checkpoint -> (Embedder in eval mode, Config)."""
    from ssps.embedder import Embedder

    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, path)
    model = Embedder(cfg)
    try:
        model.load_state_dict(ckpt["embedder"])
    except RuntimeError as e:
        raise SSPSError(f"{path}: embedder weights do not match the stored config ({str(e)[:200]})") from None
    return model.to(device).eval(), cfg
