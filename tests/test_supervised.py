"""Supervised AAM-softmax: the loss against an independent numpy reference, the margin warm-up, training
through the shared trainer, initialisation from an SSL checkpoint, and the errors on bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import join_processes
from test_train import tiny_cfg

from ssps.checkpoint import load_checkpoint
from ssps.cli import main
from ssps.data.manifest import Utterance, read_manifest, write_manifest
from ssps.errors import SSPSError
from ssps.methods.losses import aam_softmax
from ssps.train.schedules import margin_warmup
from ssps.train.trainer import train

SUP = ["method.name=supervised", "method.supervised.crop_seconds=0.5", "optim.lr=0.005"]


def reference_aam(cos: np.ndarray, labels: np.ndarray, m: float, s: float) -> float:
    """ArcFace written from its definition: angle theta_y, add m, take the cosine (float64)."""
    cos = np.clip(cos.astype(np.float64), -1 + 1e-7, 1 - 1e-7)
    logits = s * cos.copy()
    for i, y in enumerate(labels):
        theta = np.arccos(cos[i, y])
        if theta + m <= np.pi:
            logits[i, y] = s * np.cos(theta + m)
        else:  # past pi: the linear continuation cos(theta) - m sin(m)
            logits[i, y] = s * (cos[i, y] - m * np.sin(m))
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


@pytest.mark.parametrize("margin,scale", [(0.0, 30.0), (0.2, 30.0), (0.5, 10.0), (1.0, 5.0)])
def test_aam_softmax_matches_a_numpy_reference(margin, scale):
    g = torch.Generator().manual_seed(int(margin * 10))
    cos = torch.rand(64, 7, generator=g) * 2 - 1
    cos[:4, 0] = -0.999  # targets with theta + m > pi take the continuation branch
    labels = torch.randint(0, 7, (64,), generator=g)
    labels[:4] = 0
    got = aam_softmax(cos.double(), labels, margin, scale)
    assert got.item() == pytest.approx(reference_aam(cos.numpy(), labels.numpy(), margin, scale), rel=1e-9)


def test_aam_margin_penalises_the_target_and_gives_gradients():
    cos = torch.tensor([[0.7, 0.2, -0.1], [0.1, 0.6, 0.3]], requires_grad=True)
    labels = torch.tensor([0, 1])
    plain = torch.nn.functional.cross_entropy(30.0 * cos, labels)
    assert aam_softmax(cos, labels, 0.0, 30.0).item() == pytest.approx(plain.item(), rel=1e-6)
    loss = aam_softmax(cos, labels, 0.2, 30.0)
    assert loss.item() > plain.item()
    loss.backward()
    assert cos.grad[0, 0] < 0 and cos.grad[1, 1] < 0  # raising the target cosine lowers the loss
    with pytest.raises(ValueError, match="margin must be >= 0"):
        aam_softmax(cos, labels, -0.1, 30.0)


def test_margin_warmup_schedule():
    m = margin_warmup(0.2, steps_per_epoch=10, epochs=6, start=2, warmup=2)
    assert m.shape == (60,)
    assert np.all(m[:20] == 0) and np.all(m[40:] == pytest.approx(0.2))
    assert np.all(np.diff(m[20:40]) > 0)  # strictly rising during the warm-up
    assert m[30] == pytest.approx(0.1)
    assert np.all(margin_warmup(0.3, 5, 3, 0, 0) == 0.3)
    assert np.all(margin_warmup(0.3, 5, 3, 1, 0)[:5] == 0)


def test_supervised_trains_through_the_shared_trainer(toy_corpus, tmp_path):
    cfg = tiny_cfg(
        toy_corpus, *SUP, "train.epochs=6", "method.supervised.margin_warmup_epochs=2", "optim.lr=0.01"
    )
    latest = train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(latest)
    assert ckpt["provenance"]["num_speakers"] == 4
    assert ckpt["train"]["method"]["classifier"].shape == (4, 32)
    assert not any("classifier" in k for k in ckpt["embedder"])  # evaluation sees the encoder only
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["loss"] for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 6 and epochs[-1] < epochs[0]


def test_subcenter_cosine_is_each_class_s_best_subcenter():
    from ssps.config import SupervisedConfig
    from ssps.methods.supervised import Supervised

    torch.manual_seed(0)
    embedder = torch.nn.Linear(6, 8)
    embedder.encoder = SimpleNamespace(embed_dim=8)  # what embedding_dim reads
    wav = torch.randn(5, 6)
    plain = Supervised(embedder, SupervisedConfig(), num_classes=3)
    sub = Supervised(embedder, SupervisedConfig(subcenters=4), num_classes=3)
    assert plain.classifier.shape == (3, 8) and sub.classifier.shape == (12, 8)
    emb = torch.nn.functional.normalize(embedder(wav), dim=1)
    w = torch.nn.functional.normalize(sub.classifier, dim=1).view(3, 4, 8)
    want = torch.stack([(emb @ w[c].T).max(1).values for c in range(3)], 1)
    torch.testing.assert_close(sub(wav), want)
    plain_want = emb @ torch.nn.functional.normalize(plain.classifier, dim=1).T
    torch.testing.assert_close(plain(wav), plain_want)
    with pytest.raises(SSPSError, match="subcenters: expected >= 1, got 0"):
        Supervised(embedder, SupervisedConfig(subcenters=0), num_classes=3)


def reference_nt_xent(a: np.ndarray, b: np.ndarray, t: float) -> float:
    """SimCLR's NT-Xent from its definition: 2N unit vectors, each one's partner is its target (float64)."""
    z = np.concatenate([a, b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(a)
    sim = z @ z.T / t
    np.fill_diagonal(sim, -np.inf)
    target = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    logp = (
        sim
        - np.log(np.exp(sim - sim.max(1, keepdims=True)).sum(1, keepdims=True))
        - sim.max(1, keepdims=True)
    )
    return float(-logp[np.arange(2 * n), target].mean())


def test_instance_term_adds_the_weighted_nt_xent_of_two_crops_to_the_aam_of_both():
    from ssps.config import SupervisedConfig
    from ssps.methods.supervised import Supervised
    from ssps.train.steps import SupervisedSteps

    torch.manual_seed(0)
    embedder = torch.nn.Linear(6, 8)
    embedder.encoder = SimpleNamespace(embed_dim=8)
    s = SupervisedConfig(margin=0.2, scale=30.0, instance_weight=0.5, instance_temperature=0.1)
    method = Supervised(embedder, s, num_classes=3)
    cfg = SimpleNamespace(method=SimpleNamespace(supervised=s), train=SimpleNamespace(epochs=1))
    steps = SupervisedSteps(method, cfg, labels=torch.tensor([0, 1, 2, 1, 0]), steps_per_epoch=4)
    views, index = [torch.randn(4, 6), torch.randn(4, 6)], torch.tensor([4, 0, 3, 2])
    anchors, positives, _ = steps.forward(method, views, index)
    assert positives.tolist() == [0, 0, 1, 2, 0, 0, 1, 2]  # each crop keeps its utterance's class
    with torch.no_grad():
        loss = float(steps.loss(anchors, positives, 0.0))
        cos = method(torch.cat(views)).numpy()
        z1, z2 = embedder(views[0]).numpy(), embedder(views[1]).numpy()
    want = reference_aam(cos, positives.numpy(), 0.2, 30.0) + 0.5 * reference_nt_xent(z1, z2, 0.1)
    assert loss == pytest.approx(want, rel=1e-5)
    plain = SupervisedSteps(
        Supervised(embedder, SupervisedConfig(), 3), cfg, torch.tensor([0, 1, 2, 1, 0]), 4
    )
    cosine, labels, _ = plain.forward(plain.method, views[:1], index)  # off: one crop, AAM only
    assert cosine.shape == (4, 3) and labels.tolist() == [0, 0, 1, 2]
    with pytest.raises(SSPSError, match="instance_weight >= 0 and instance_temperature > 0, got -1.0"):
        Supervised(embedder, SupervisedConfig(instance_weight=-1.0), num_classes=3)


def test_instance_term_trains_on_two_crops_through_the_shared_trainer(toy_corpus, tmp_path):
    from ssps.train.run import build_views

    cfg = tiny_cfg(toy_corpus, *SUP, "train.epochs=2", "method.supervised.instance_weight=0.5")
    assert [g.count for g in build_views(cfg, []).groups] == [2]
    assert [g.count for g in build_views(tiny_cfg(toy_corpus, *SUP), []).groups] == [1]
    latest = train(cfg, tmp_path / "run")
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["loss"] for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 2 and all(np.isfinite(epochs))
    assert load_checkpoint(latest)["config"]["method"]["supervised"]["instance_weight"] == 0.5


def test_supervised_init_from_an_ssl_checkpoint_takes_the_encoder_and_starts_at_epoch_0(toy_corpus, tmp_path):
    ssl = train(tiny_cfg(toy_corpus, "train.epochs=1"), tmp_path / "ssl")
    cfg = tiny_cfg(toy_corpus, *SUP, "train.epochs=1", f"train.init={ssl}", "optim.lr=0")
    latest = train(cfg, tmp_path / "sup")
    before, after = load_checkpoint(ssl)["embedder"], load_checkpoint(latest)["embedder"]
    weights = [k for k in before if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(before[k], after[k]) for k in weights)  # lr 0: the SSL weights were loaded
    assert load_checkpoint(latest)["epoch"] == 1  # started at 0, not at the SSL run's epoch


def test_supervised_rejects_a_manifest_without_speakers(toy_corpus, tmp_path, capsys):
    m = read_manifest(toy_corpus / "train.tsv")
    rows = [
        Utterance(r.utterance, str(m.resolve(i)), "", r.session, r.duration) for i, r in enumerate(m.rows)
    ]
    write_manifest(tmp_path / "nolabels.tsv", rows)
    args = [f"{k}" for k in [*SUP, f"data.train_manifest={tmp_path / 'nolabels.tsv'}", "encoder.channels=32"]]
    assert main(["train", "--out", str(tmp_path / "run"), "/dev/null", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a speaker on every row" in err[0] and "nolabels.tsv" in err[0]


def test_supervised_with_ssps_is_a_user_error(toy_corpus, tmp_path):
    with pytest.raises(SSPSError, match="ssps.enabled=true: SSPS replaces SSL positives"):
        train(tiny_cfg(toy_corpus, *SUP, "ssps.enabled=true"), tmp_path / "run")


def test_supervised_resume_continues_exactly(toy_corpus, tmp_path):
    cfg = tiny_cfg(
        toy_corpus, *SUP, "train.checkpoint_every_steps=1", "method.supervised.margin_warmup_epochs=1"
    )
    train(cfg, tmp_path / "full")
    train(cfg, tmp_path / "cut", stop_after_steps=4)
    train(cfg, tmp_path / "cut", resume=True)
    a, b = (load_checkpoint(tmp_path / d / "latest.pt")["train"]["method"] for d in ("full", "cut"))
    assert a.keys() == b.keys() and "classifier" in a
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


WORLD, BATCH = 2, 8


def _ddp_model():
    from ssps.config import load_config
    from ssps.methods import build_method

    torch.manual_seed(0)
    cfg = load_config(overrides=["encoder.name=tdnn", "encoder.channels=32", "encoder.embed_dim=16", *SUP])
    return build_method(cfg, num_classes=5).eval()  # eval: BatchNorm statistics do not depend on the split


def _ddp_data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 4000, generator=g), torch.arange(BATCH) % 5


def _ddp_step(model):
    method = getattr(model, "module", model)
    wav, labels = _ddp_data()
    if hasattr(model, "module"):
        n, r = BATCH // WORLD, torch.distributed.get_rank()
        wav, labels = wav[r * n : (r + 1) * n], labels[r * n : (r + 1) * n]
    optimizer = torch.optim.SGD(method.trainable_parameters(), lr=0.5)
    method.loss(model(wav), labels, margin=0.2).backward()
    optimizer.step()
    return {k: v.detach().clone() for k, v in method.named_parameters()}


def _ddp_worker(rank, init_file, out_dir):
    from pathlib import Path

    import torch.distributed as torch_dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.save(_ddp_step(DistributedDataParallel(_ddp_model())), Path(out_dir) / f"rank{rank}.pt")
        # Neither rank tears its gloo pairs down while the other may still use them: without this, one run
        # in many aborted in rank 0 ("terminate called without an active exception") after a good step.
        torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()


def test_supervised_two_processes_equal_one(tmp_path):
    import torch.multiprocessing as mp

    workers = mp.start_processes(
        _ddp_worker,
        args=(str(tmp_path / "init"), str(tmp_path)),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    want = _ddp_step(_ddp_model())
    join_processes(workers, timeout_s=120)
    initial = dict(_ddp_model().named_parameters())
    assert not torch.allclose(initial["classifier"], want["classifier"], atol=1e-4)  # the step moved it
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in want.items():
            assert torch.allclose(got[name], value, atol=1e-5, rtol=0), (rank, name)
