"""Continuing a base run (train.init) and resuming one: the schedules pick up where the base left them."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import tiny_cfg

from ssps.checkpoint import load_checkpoint
from ssps.errors import SSPSError
from ssps.train import schedules
from ssps.train.trainer import train

DINO = [
    "method.name=dino",
    "optim.name=sgd",
    "optim.lr=0.05",
    "optim.schedule=cosine",
    "optim.warmup_epochs=1",
]


def _lrs(run_dir) -> dict[int, float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["lr"] for r in rows if r["kind"] == "train"}


def test_base_then_continuation_equals_one_run(toy_corpus, tmp_path):
    """A base of 2 of 4 epochs continued with train.init ends bit-equal to one 4-epoch run: the cosine lr
    and teacher momentum resume at the base's step, and so do the optimizer moments and the RNG."""
    whole = train(tiny_cfg(toy_corpus, *DINO, "train.epochs=4"), tmp_path / "whole")
    base = train(tiny_cfg(toy_corpus, *DINO, "train.epochs=2", "train.schedule_epochs=4"), tmp_path / "base")
    cont = train(tiny_cfg(toy_corpus, *DINO, "train.epochs=4", f"train.init={base}"), tmp_path / "cont")
    lrs, want = _lrs(tmp_path / "cont"), _lrs(tmp_path / "whole")
    assert min(lrs) == 7 and lrs[7] == want[7]  # the continuation's first step: step 6 (logged as 7)
    a, b = load_checkpoint(whole), load_checkpoint(cont)
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (4, 12)
    for key, value in a["train"]["method"].items():
        assert torch.equal(value, b["train"]["method"][key]), key


def test_continuation_of_a_base_on_its_own_schedule_is_warned(toy_corpus, tmp_path):
    base = train(tiny_cfg(toy_corpus, *DINO, "train.epochs=2"), tmp_path / "base")
    train(tiny_cfg(toy_corpus, *DINO, "train.epochs=3", f"train.init={base}"), tmp_path / "cont")
    log = (tmp_path / "cont" / "train.log").read_text()
    assert "was trained on another schedule (learning rate at step" in log


def test_resume_refuses_an_epochs_change_that_moves_the_schedule(toy_corpus, tmp_path):
    train(tiny_cfg(toy_corpus, *DINO, "train.epochs=1"), tmp_path / "run")
    with pytest.raises(
        SSPSError, match=r"differ from .* and change the schedule \((learning rate|teacher momentum) at step"
    ):
        train(tiny_cfg(toy_corpus, *DINO, "train.epochs=2"), tmp_path / "run", resume=True)


def test_resume_accepts_an_epochs_change_inside_the_schedule(toy_corpus, tmp_path):
    cfg = [*DINO, "train.schedule_epochs=3"]
    train(tiny_cfg(toy_corpus, *cfg, "train.epochs=1"), tmp_path / "run")
    train(tiny_cfg(toy_corpus, *cfg, "train.epochs=3"), tmp_path / "run", resume=True)
    assert load_checkpoint(tmp_path / "run" / "latest.pt")["epoch"] == 3
    # A step schedule does not depend on the run's length: SimCLR may be extended freely.
    train(tiny_cfg(toy_corpus, "train.epochs=1"), tmp_path / "simclr")
    train(tiny_cfg(toy_corpus, "train.epochs=2"), tmp_path / "simclr", resume=True)


def test_schedule_epochs_below_epochs_is_an_error(toy_corpus):
    with pytest.raises(SSPSError, match="train.schedule_epochs=2: expected 0 or at least train.epochs=3"):
        schedules.learning_rate(tiny_cfg(toy_corpus, "train.epochs=3", "train.schedule_epochs=2"), 5)
