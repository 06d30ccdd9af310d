"""``ssps info`` on every checkpoint kind (training, epoch, averaged, older, exported) and on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssps.checkpoint import load_checkpoint, load_embedder
from ssps.cli import main
from ssps.info import NOT_RECORDED, checkpoint_info
from ssps.utils.files import sha256

TINY = [
    "encoder.name=tdnn",
    "encoder.embed_dim=32",
    "encoder.channels=32",
    "method.simclr.crop_seconds=0.5",
    "data.augment.strategy=none",
    "data.min_duration=0.1",
    "train.batch_size=8",
    "train.steps_per_epoch=3",
    "train.epochs=2",
    "train.validate_every=1",
]


@pytest.fixture(scope="module")
def run(toy_corpus, tmp_path_factory):
    """A 2-epoch run with validation, its average, and an evaluation of latest.pt in the default place."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("info") / "run"
    overrides = [
        *TINY,
        f"data.train_manifest={toy_corpus / 'train.tsv'}",
        f"data.val_trials={toy_corpus / 'trials.txt'}",
        f"data.val_root={toy_corpus / 'wav'}",
    ]
    config = Path(__file__).resolve().parents[1] / "configs" / "simclr.yaml"
    assert main(["train", str(config), *overrides, "--out", str(out)]) == 0
    assert main(["average", str(out), "--last", "2"]) == 0
    trials = toy_corpus / "trials.txt"
    assert (
        main(
            [
                "eval",
                str(out / "latest.pt"),
                str(trials),
                "--data",
                str(toy_corpus / "wav"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return out


def test_training_checkpoint(run, toy_corpus):
    info = checkpoint_info(run / "latest.pt")
    embedder, _ = load_embedder(run / "latest.pt")
    assert info["kind"].startswith("training")
    assert (info["method"], info["encoder"], info["embedding_dim"]) == ("simclr", "tdnn", 32)
    assert info["parameters"] == sum(p.numel() for p in embedder.parameters())
    assert (info["epochs"], info["epochs_planned"], info["steps"]) == (2, 2, 6)
    assert info["train_manifest_sha256"] == sha256(toy_corpus / "train.tsv")
    assert info["sha256"] == sha256(run / "latest.pt")
    results = json.loads((run / "eval" / "latest_trials" / "results.json").read_text())
    [evaluation] = info["evaluations"]
    assert evaluation["eer"] == results["eer"] and evaluation["n_trials"] == results["n_trials"]
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in logged if r["kind"] == "epoch"][-1]
    expected = {
        "eer": last["val_eer"],
        "min_dcf_0.01": last["val_min_dcf_0.01"],
        "trials": last["val_trials"],
    }
    assert info["validation"] == {"epoch": 1, **expected}
    assert info["config"]["train"]["epochs"] == 2


def test_epoch_checkpoint_gets_its_own_epoch_and_no_foreign_results(run):
    info = checkpoint_info(run / "epoch_0000.pt")
    assert info["kind"] == "embedder only"
    assert (info["epochs"], info["steps"]) == (1, 3)
    assert info["evaluations"] == []  # the results in run/eval are of latest.pt (another sha256)
    assert info["validation"]["epoch"] == 0
    assert info["train_manifest_sha256"] != NOT_RECORDED


def test_averaged_checkpoint(run):
    info = checkpoint_info(run / "averaged.pt")
    assert info["kind"].startswith("averaged") and info["averaged_from"] == ["epoch_0000.pt", "epoch_0001.pt"]
    assert info["train_manifest_sha256"] == checkpoint_info(run / "latest.pt")["train_manifest_sha256"]
    assert info["validation"] is None  # no epoch of training produced these weights


def test_older_checkpoint_says_not_recorded(run, tmp_path):
    ckpt = load_checkpoint(run / "epoch_0001.pt")
    del ckpt["provenance"]  # as written before checkpoints recorded it
    torch.save(ckpt, tmp_path / "old.pt")
    info = checkpoint_info(tmp_path / "old.pt")
    assert info["train_manifest_sha256"] == NOT_RECORDED
    assert info["epochs"] == 2


def test_text_and_json_output(run, capsys):
    assert main(["info", str(run / "latest.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == checkpoint_info(run / "latest.pt")
    assert main(["info", str(run / "latest.pt")]) == 0
    text = capsys.readouterr().out
    assert "2 of 2 epochs, 6 steps" in text and "latest_trials/results.json" in text and "config:" in text


def test_exported_model(run, tmp_path):
    out = tmp_path / "model.pt"
    assert main(["export", str(run / "averaged.pt"), "--out", str(out)]) == 0
    info = checkpoint_info(out)
    assert info["kind"].startswith("exported (torchscript")
    assert info["source_checkpoint_sha256"] == sha256(run / "averaged.pt")
    assert info["parameters"] == checkpoint_info(run / "averaged.pt")["parameters"]


@pytest.mark.parametrize("content", [None, b"just some text\n", b"PK\x03\x04 broken zip"])
def test_bad_input_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
