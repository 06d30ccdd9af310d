"""SSPS inside the training loop: what the loss receives, how the two losses mix, DINO's rebuilt logits,
the frozen last layer, and validation during training."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import tiny_cfg

from ssps.sampling.draws import SampleResult
from ssps.train.loop import train_one_epoch
from ssps.train.run import Run
from ssps.train.trainer import train

SSPS = ["ssps.enabled=true", "ssps.start_epoch=1", "ssps.sampling=kmeans-repr", "ssps.nearest_clusters=0"]
DINO = ["method.name=dino", "optim.name=sgd"]


def _run(corpus, tmp_path, *extra) -> Run:
    run = Run(tiny_cfg(corpus, *SSPS, *extra), tmp_path, torch.device("cpu"))
    train_one_epoch(run, 0, "fill", run.loader(0, 0), 0)  # fills the queues
    run.sampler.cluster(seed=0)
    return run


class Recorder:
    """Wraps steps.loss and scaler.scale: the positives each loss call got and the loss that was trained."""

    def __init__(self, run: Run, found_every: int = 2):
        self.calls, self.trained, self.drawn = [], [], []
        loss, sample, scale = run.steps.loss, run.sampler.sample, run.scaler.scale

        def recording_loss(anchors, positives, *args, **kwargs):
            value = loss(anchors, positives, *args, **kwargs)
            self.calls.append((positives.detach().clone(), value.detach()))
            return value

        def partial_sample(index, step):  # a known pattern: every other anchor gets a pseudo-positive
            res = sample(index, step)
            found = torch.arange(len(index)) % found_every == 0
            positives = torch.randn_like(res.positives)
            # What the loss should get: the stored entry (DINO: logits rebuilt by this step's teacher).
            self.drawn.append((run.steps.from_stored(positives), found))
            return SampleResult(positives, found, torch.where(found, res.source_indices, -1))

        def recording_scale(value):
            self.trained.append(value.detach())
            return scale(value)

        run.steps.loss, run.sampler.sample, run.scaler.scale = recording_loss, partial_sample, recording_scale


@pytest.mark.parametrize("method", ["simclr", "dino"])
def test_only_found_rows_get_the_stored_positive_and_the_losses_mix_exactly(toy_corpus, tmp_path, method):
    run = _run(toy_corpus, tmp_path, "ssps.loss_weight=0.25", *(DINO if method == "dino" else []))
    rec = Recorder(run)
    train_one_epoch(run, 1, "on", run.loader(1, 0), 0)
    assert len(rec.drawn) == 3 and len(rec.calls) == 6 and len(rec.trained) == 3
    for step, (stored, found) in enumerate(rec.drawn):
        (replaced, ssps_loss), (same, same_loss) = rec.calls[2 * step], rec.calls[2 * step + 1]
        # The stored positive reaches the loss (DINO: as the teacher logits rebuilt from it).
        assert torch.equal(replaced[found], stored[found])
        # Rows without a pseudo-positive keep their same-utterance positive.
        assert torch.equal(replaced[~found], same[~found])
        assert not torch.allclose(replaced[found], same[found])
        assert torch.equal(rec.trained[step], 0.25 * ssps_loss + 0.75 * same_loss)


def test_dino_logits_rebuilt_from_stored_bottlenecks_equal_the_teachers(toy_corpus, tmp_path):
    run = _run(toy_corpus, tmp_path, *DINO)
    batch = next(iter(run.loader(1, 0)))
    _, positives, stored = run.steps.forward(run.model, batch["views"])
    assert stored.shape[-1] == 16 and positives.shape[-1] == 64  # bottleneck stored, logits rebuilt
    assert torch.allclose(run.steps.from_stored(stored), positives, atol=1e-6)
    # Through the float16 queue: the entry drawn for an anchor rebuilds its teacher logits closely.
    index = batch["index"]
    run.sampler.write_positive(index, stored.detach().float())
    slots = [int((run.sampler.positive.indices == i).nonzero()[-1]) for i in index]
    rebuilt = run.steps.from_stored(run.sampler.positive.embeddings[slots].float())
    assert torch.allclose(rebuilt, positives, atol=2e-3)


def test_dino_last_layer_is_frozen_in_epoch_0_by_the_trainer(toy_corpus, tmp_path):
    run = Run(
        tiny_cfg(toy_corpus, *DINO, "method.dino.freeze_last_layer_epochs=1"), tmp_path, torch.device("cpu")
    )
    head = run.method.student["head"]

    def snapshot():
        last = {n: p.detach().clone() for n, p in head.prototypes.named_parameters()}
        rest = {n: p.detach().clone() for n, p in head.mlp.named_parameters()}
        return last, rest

    last0, rest0 = snapshot()
    train_one_epoch(run, 0, "off", run.loader(0, 0), 0)
    last1, rest1 = snapshot()
    assert all(torch.equal(last0[n], last1[n]) for n in last0)
    assert all(not torch.equal(rest0[n], rest1[n]) for n in rest0)
    train_one_epoch(run, 1, "off", run.loader(1, 0), run.step)
    last2, _ = snapshot()
    assert any(not torch.equal(last1[n], last2[n]) for n in last1)  # trained from epoch 1 on


def test_validation_runs_during_training(toy_corpus, tmp_path):
    cfg = tiny_cfg(
        toy_corpus,
        f"data.val_trials={toy_corpus / 'trials.txt'}",
        f"data.val_root={toy_corpus / 'wav'}",
        "data.val_max_trials=50",
    )
    train(cfg, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(epochs) == 2 and all(0 <= r["val_eer"] <= 1 and r["val_trials"] == 50 for r in epochs)
