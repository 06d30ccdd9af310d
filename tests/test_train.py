"""Trainer: smoke runs, exact resume, SSPS phases, and the documented behaviour on bad input."""

from __future__ import annotations

import json

import pytest
import torch

from ssps.checkpoint import load_checkpoint, load_embedder
from ssps.cli import main
from ssps.config import load_config
from ssps.errors import SSPSError
from ssps.train.trainer import train

TINY = [
    "encoder.name=tdnn",
    "encoder.embed_dim=32",
    "encoder.channels=32",
    "method.simclr.crop_seconds=0.5",
    "method.dino.global_seconds=0.6",
    "method.dino.local_seconds=0.4",
    "method.dino.local_crops=2",
    "method.dino.head_hidden=32",
    "method.dino.head_bottleneck=16",
    "method.dino.head_out=64",
    "data.augment.strategy=none",
    "data.min_duration=0.1",
    "train.batch_size=8",
    "train.steps_per_epoch=3",
    "train.epochs=2",
    "train.log_every=1",
    "ssps.reference_seconds=1.0",
    "ssps.num_clusters=4",
    "ssps.positive_queue_size=16",
]


def tiny_cfg(corpus, *extra):
    return load_config(overrides=[*TINY, f"data.train_manifest={corpus / 'train.tsv'}", *extra])


def embedder_weights(path):
    return load_checkpoint(path)["embedder"]


@pytest.mark.parametrize("method", ["simclr", "dino"])
def test_smoke_run_writes_checkpoints_that_load_as_embedders(toy_corpus, tmp_path, method):
    cfg = tiny_cfg(
        toy_corpus, f"method.name={method}", "optim.name=sgd" if method == "dino" else "optim.lr=0.001"
    )
    latest = train(cfg, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").glob("epoch_*.pt")) == ["epoch_0000.pt", "epoch_0001.pt"]
    embedder, stored = load_embedder(latest)
    assert stored == cfg
    with torch.no_grad():
        emb = embedder(torch.randn(2, 16000))
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1]
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_resume_continues_exactly(toy_corpus, tmp_path):
    cfg = tiny_cfg(toy_corpus, "data.augment.strategy=both", "train.checkpoint_every_steps=1")
    train(cfg, tmp_path / "full")
    train(cfg, tmp_path / "cut", stop_after_steps=4)  # stops mid-epoch 1 with latest.pt at step 4
    assert load_checkpoint(tmp_path / "cut" / "latest.pt")["step"] == 4
    train(cfg, tmp_path / "cut", resume=True)
    a, b = embedder_weights(tmp_path / "full" / "latest.pt"), embedder_weights(tmp_path / "cut" / "latest.pt")
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


def test_ssps_fills_then_samples(toy_corpus, tmp_path):
    cfg = tiny_cfg(
        toy_corpus,
        "ssps.enabled=true",
        "ssps.start_epoch=1",
        "train.epochs=3",
        "ssps.sampling=kmeans-repr",
        "ssps.nearest_clusters=0",
    )
    train(cfg, tmp_path / "run")
    epochs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    assert [r["phase"] for r in epochs] == ["fill", "on", "on"]
    assert 0 < epochs[1]["coverage"] <= 1
    assert "speaker_accuracy" in epochs[1] and "nmi_speaker" in epochs[1]


def test_init_from_base_checkpoint_fills_first(toy_corpus, tmp_path):
    base = train(tiny_cfg(toy_corpus), tmp_path / "base")
    cfg = tiny_cfg(
        toy_corpus,
        "ssps.enabled=true",
        "ssps.start_epoch=2",
        "train.epochs=4",
        "ssps.sampling=knn",
        f"train.init={base}",
    )
    train(cfg, tmp_path / "cont")
    epochs = [json.loads(x) for x in (tmp_path / "cont" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["phase"]) for r in epochs if r["kind"] == "epoch"] == [(2, "fill"), (3, "on")]


def test_resume_refuses_corrupt_checkpoint(toy_corpus, tmp_path):
    cfg = tiny_cfg(toy_corpus, "train.epochs=1")
    latest = train(cfg, tmp_path / "run")
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    with pytest.raises(SSPSError, match="corrupt or truncated checkpoint"):
        train(cfg, tmp_path / "run", resume=True)


def test_resume_refuses_a_changed_config(toy_corpus, tmp_path):
    train(tiny_cfg(toy_corpus, "train.epochs=1"), tmp_path / "run")
    with pytest.raises(SSPSError, match="config differs .* optim.lr"):
        train(tiny_cfg(toy_corpus, "train.epochs=2", "optim.lr=0.5"), tmp_path / "run", resume=True)


def test_existing_run_is_not_overwritten(toy_corpus, tmp_path):
    cfg = tiny_cfg(toy_corpus, "train.epochs=1")
    train(cfg, tmp_path / "run")
    with pytest.raises(SSPSError, match="already holds a run"):
        train(cfg, tmp_path / "run")


def test_empty_manifest_is_an_error(tmp_path):
    (tmp_path / "m.tsv").write_text("utterance\tpath\tspeaker\tsession\tduration\n")
    cfg = load_config(overrides=[*TINY, f"data.train_manifest={tmp_path / 'm.tsv'}"])
    with pytest.raises(SSPSError, match="no utterances"):
        train(cfg, tmp_path / "run")


def test_missing_and_unreadable_files_are_skipped_and_counted(toy_corpus, tmp_path, caplog):
    rows = (toy_corpus / "train.tsv").read_text().splitlines()
    wav = toy_corpus / "wav"
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....not audio")
    extra = [f"ghost/s/1.wav\t{wav}/ghost.wav\tghost\ts\t1.0", f"bad/s/1.wav\t{broken}\tbad\ts\t1.0"]
    fixed = [r if i == 0 else r.replace("\twav/", f"\t{wav}/") for i, r in enumerate(rows)]
    (tmp_path / "m.tsv").write_text("\n".join(fixed + extra) + "\n")
    cfg = load_config(overrides=[*TINY, f"data.train_manifest={tmp_path / 'm.tsv'}", "train.epochs=1"])
    train(cfg, tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "skipped 2 of 26 manifest rows" in log and "'missing': 1" in log and "'unreadable': 1" in log


def test_cli_train_and_average(toy_corpus, tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"data: {{train_manifest: {toy_corpus / 'train.tsv'}}}\n")
    assert main(["train", str(cfg_file), *TINY, "--out", str(tmp_path / "run")]) == 0
    assert main(["average", str(tmp_path / "run"), "--last", "2"]) == 0
    avg = load_checkpoint(tmp_path / "run" / "averaged.pt")["embedder"]
    a, b = (
        embedder_weights(tmp_path / "run" / "epoch_0000.pt"),
        embedder_weights(tmp_path / "run" / "epoch_0001.pt"),
    )
    key = next(k for k in a if a[k].is_floating_point() and a[k].dim() > 1)
    assert torch.allclose(avg[key], (a[key] + b[key]) / 2, atol=1e-6)
    assert main(["train", str(cfg_file), "train.epocs=1", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_init_from_an_embedder_only_checkpoint(toy_corpus, tmp_path):
    train(tiny_cfg(toy_corpus, "train.epochs=1"), tmp_path / "base")
    epoch_file = tmp_path / "base" / "epoch_0000.pt"
    cfg = tiny_cfg(toy_corpus, "train.epochs=2", f"train.init={epoch_file}")
    from ssps.train.run import Run

    run = Run(cfg, tmp_path / "x", torch.device("cpu"))
    run.restore(epoch_file, weights_only=True)
    stored = load_checkpoint(epoch_file)["embedder"]
    mine = run.method.eval_embedder().state_dict()
    assert run.epoch == 1 and all(torch.equal(mine[k], stored[k]) for k in stored)
    with pytest.raises(SSPSError, match="holds no training state"):
        run.restore(epoch_file)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_on_a_cpu_only_where_it_has_native_bfloat16(toy_corpus, tmp_path, monkeypatch, native):
    """train.amp=bf16 on a CPU: autocast where bfloat16 is native (the weights then differ from float32's,
    and stay finite through an SSPS epoch); elsewhere a warning and exactly the float32 run."""
    import ssps.utils.hardware

    monkeypatch.setattr(ssps.utils.hardware, "native_bfloat16", lambda: native)
    ssps_on = ["ssps.enabled=true", "ssps.start_epoch=1"]
    fp32 = embedder_weights(train(tiny_cfg(toy_corpus, *ssps_on), tmp_path / "fp32"))
    bf16 = embedder_weights(train(tiny_cfg(toy_corpus, *ssps_on, "train.amp=bf16"), tmp_path / "bf16"))
    assert all(torch.isfinite(v.float()).all() for v in bf16.values())
    same = all(torch.equal(fp32[k], bf16[k]) for k in fp32)
    assert same is not native
    assert ("train.amp=bf16 needs" in (tmp_path / "bf16" / "train.log").read_text()) is not native
