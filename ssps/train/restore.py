"""Starting a run from a checkpoint: resume (all state), continue a base (``train.init``), or take an
embedder-only checkpoint's encoder weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ssps.checkpoint import load_checkpoint
from ssps.errors import SSPSError

if TYPE_CHECKING:
    from ssps.train.run import Run

log = logging.getLogger("ssps")


def restore(run: Run, path: Path, weights_only: bool = False) -> None:
    """Resume from ``path`` (all state), or continue a base run from it (``weights_only``: train.init).

    A continuation takes the base's weights, optimizer moments, step counter and RNG where they fit
    (the same method and optimizer), so with the same ``train.schedule_epochs`` its first step gets the
    learning rate and teacher momentum the base schedule has there. Its SSPS queues start empty.
    """
    ckpt = load_checkpoint(path, map_location=run.device)
    train = ckpt.get("train")
    if weights_only and run.labels is not None:
        # A classifier belongs to its label set (pseudo-labels change every round): take only the
        # encoder, and start a fresh schedule at epoch 0.
        _init_embedders(run, path, ckpt)
        return
    if train is None and weights_only:
        _init_embedders(run, path, ckpt)
        run.epoch, run.step = ckpt["epoch"], ckpt["epoch"] * run.steps_per_epoch
        return
    if train is None:
        raise SSPSError(f"{path}: holds no training state (an embedder-only checkpoint); use latest.pt")
    try:
        run.method.load_state_dict(train["method"])
    except RuntimeError as e:
        raise SSPSError(
            f"{path}: model weights do not fit this config ({str(e).splitlines()[0][:160]})"
        ) from None
    run.epoch, run.step = ckpt["epoch"], ckpt["step"]
    if weights_only:
        _continue_state(run, path, train, ckpt["config"]["train"]["seed"])
        return
    run.optimizer.load_state_dict(train["optimizer"])
    run.scaler.load_state_dict(train["scaler"])
    torch.set_rng_state(train["torch_rng"].cpu())
    if run.sampler is not None and "sampler" in train:
        run.sampler.load_state_dict(train["sampler"])
        run.queue_ready = train["queue_ready"]
        run.queues_restored = True


def _continue_state(run: Run, path: Path, train: dict, base_seed: int | None = None) -> None:
    """train.init from a full checkpoint: optimizer, scaler and RNG too, where they fit.

    A continuation with another ``train.seed`` than its base's is one of several seeds of an experiment:
    its torch RNG is seeded from (seed, step) instead of taken over, so the seeds differ everywhere.
    """
    try:
        run.optimizer.load_state_dict(train["optimizer"])
        run.scaler.load_state_dict(train["scaler"])
    except (ValueError, KeyError, RuntimeError) as e:
        log.warning("train.init %s: optimizer state does not fit (%s); it starts fresh", path, e)
    if base_seed is None or base_seed == run.cfg.train.seed:
        torch.set_rng_state(train["torch_rng"].cpu())
    else:
        torch.manual_seed(run.cfg.train.seed * 1_000_003 + run.step)
    if not train.get("epoch_done", True):
        log.warning("train.init %s: the base stopped mid-epoch; continuing from step %d", path, run.step)


def _init_embedders(run: Run, path: Path, ckpt: dict) -> None:
    """Initialise from an embedder-only checkpoint (an epoch or averaged one): the encoder weights go into
    every embedder the method holds (DINO: student and teacher); heads and projectors start fresh."""
    embedders = {id(e): e for e in (run.method.eval_embedder(), run.method.reference_encoder())}
    student = getattr(run.method, "student", None)
    if isinstance(student, nn.ModuleDict) and "embedder" in student:
        embedders[id(student["embedder"])] = student["embedder"]
    for embedder in embedders.values():
        try:
            embedder.load_state_dict(ckpt["embedder"])
        except RuntimeError as e:
            msg = str(e).splitlines()[0][:160]
            raise SSPSError(f"{path}: embedder weights do not fit this config ({msg})") from None
    log.warning("initialised the encoder from %s; heads, projectors and classifiers start fresh", path)
