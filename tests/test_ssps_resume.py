"""An SSPS run stopped anywhere and resumed ends bit-equal to the uninterrupted run (CPU).

Stops land in the fill epoch, right after the epoch start (re-clustering), and mid-way through an SSPS
epoch; the queues, clusters and session-pooling state come back from latest.pt (``ssps.save_queues``).
"""

from __future__ import annotations

import json

import pytest
import torch
from test_train import tiny_cfg

from ssps.checkpoint import load_checkpoint
from ssps.train.trainer import train

SSPS = ["ssps.enabled=true", "ssps.start_epoch=1", "train.epochs=3", "train.checkpoint_every_steps=1"]
RUNS = {
    "simclr-kmeans-repr": ["ssps.sampling=kmeans-repr", "ssps.nearest_clusters=1"],
    "dino-knn-session-pooling": [
        "method.name=dino",
        "optim.name=sgd",
        "ssps.sampling=knn",
        "ssps.exclude_same_session=true",
        "ssps.session_pooling=true",
        "ssps.loss_weight=0.5",
    ],
}


def _epochs(run_dir) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "epoch"]


@pytest.mark.parametrize("name", RUNS)
def test_stopped_and_resumed_ssps_run_equals_the_uninterrupted_one(toy_corpus, tmp_path, name):
    cfg = tiny_cfg(toy_corpus, *SSPS, *RUNS[name], "data.augment.strategy=both")
    whole = load_checkpoint(train(cfg, tmp_path / "whole"))
    cut = tmp_path / "cut"
    for stop in (2, 4, 8):  # fill epoch (steps 0-2), just after SSPS epoch 1 began, mid SSPS epoch 2
        train(cfg, cut, resume=(cut / "latest.pt").exists(), stop_after_steps=stop)
    got = load_checkpoint(train(cfg, cut, resume=True))
    assert [r["phase"] for r in _epochs(tmp_path / "whole")] == ["fill", "on", "on"]
    assert [r["phase"] for r in _epochs(cut)][-2:] == ["on", "on"]
    assert (whole["epoch"], whole["step"]) == (got["epoch"], got["step"]) == (3, 9)
    for part in ("method", "sampler"):
        want, have = whole["train"][part], got["train"][part]
        assert want.keys() == have.keys(), part
        for key, value in want.items():
            if isinstance(value, dict):  # the sampler's extra state: queues and clusters
                for k, v in value.items():
                    assert torch.equal(v, have[key][k]), (part, key, k)
            else:
                assert torch.equal(value, have[key]), (part, key)
