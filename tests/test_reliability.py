"""Faults that must lose nothing: NaN losses, broken audio and trial files, full disks, hostile checkpoints.

Each test names the fault it injects; docs/reliability.md states the documented behaviour they check.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_train import TINY, tiny_cfg

from ssps import checkpoint as checkpoint_module
from ssps.checkpoint import load_checkpoint
from ssps.config import load_config
from ssps.data.dataset import EpochBatchSampler
from ssps.data.trials import read_trials
from ssps.errors import SSPSError
from ssps.train.loop import NonFiniteLoss
from ssps.train.run import Run
from ssps.train.steps import SimCLRSteps
from ssps.train.trainer import train

SR = 16000


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["embedder"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key].float(), wb[key].float(), atol=1e-6, rtol=0), key


def epoch_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "epoch"]


# -- 2. numerical faults ---------------------------------------------------------------------------------
@pytest.fixture
def nan_at_step(monkeypatch):
    """Make the SimCLR loss NaN at one global step, as a divergence would (set ``poison['step']``)."""
    poison = {"step": -1, "now": -1}
    real_autocast, real_loss = Run.autocast, SimCLRSteps.loss

    def autocast(self):
        poison["now"] = self.step  # the loop enters autocast once per step, before the loss
        return real_autocast(self)

    def loss(self, *args, **kwargs):
        value = real_loss(self, *args, **kwargs)
        return value * float("nan") if poison["now"] == poison["step"] else value

    monkeypatch.setattr(Run, "autocast", autocast)
    monkeypatch.setattr(SimCLRSteps, "loss", loss)
    return poison


def test_nan_loss_stops_keeps_last_checkpoint_and_resume_can_skip_it(toy_corpus, tmp_path, nan_at_step):
    nan_at_step["step"] = 4
    stop = tiny_cfg(toy_corpus, "train.checkpoint_every_steps=1", "train.epochs=3")
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step 4 \(epoch 1\): loss_same=nan"):
        train(stop, tmp_path / "cut")
    latest = tmp_path / "cut" / "latest.pt"
    assert load_checkpoint(latest)["step"] == 4  # the last good state, written before the bad step
    before = latest.read_bytes()

    # --resume with the same policy stops again at the same step, and still does not touch latest.pt.
    with pytest.raises(NonFiniteLoss, match="step 4"):
        train(stop, tmp_path / "cut", resume=True)
    assert latest.read_bytes() == before

    # --resume with nan_policy=skip passes the bad batch; the result equals a run that skipped it throughout.
    skip = tiny_cfg(toy_corpus, "train.checkpoint_every_steps=1", "train.epochs=3", "train.nan_policy=skip")
    train(skip, tmp_path / "cut", resume=True)
    train(skip, tmp_path / "full")
    assert_same_weights(tmp_path / "full" / "latest.pt", latest)
    assert load_checkpoint(latest)["step"] == 9
    assert [r["skipped_steps"] for r in epoch_records(tmp_path / "full")] == [0, 1, 0]
    assert "skipped step 4: non-finite loss (loss_same=nan)" in (tmp_path / "cut" / "train.log").read_text()
    for value in weights(latest).values():
        assert torch.isfinite(value.float()).all()


def test_inf_loss_is_caught_as_well(toy_corpus, tmp_path, monkeypatch):
    real_loss = SimCLRSteps.loss
    monkeypatch.setattr(SimCLRSteps, "loss", lambda self, *a, **k: real_loss(self, *a, **k) + float("inf"))
    with pytest.raises(NonFiniteLoss, match="non-finite loss at step 0 .*loss_same=inf"):
        train(tiny_cfg(toy_corpus), tmp_path / "run")
    assert not (tmp_path / "run" / "latest.pt").exists()


def test_skipped_nan_batch_does_not_reach_the_ssps_queues(toy_corpus, tmp_path, monkeypatch):
    # The model itself emits NaN embeddings at one step in the SSPS 'on' phase (a blown-up forward pass).
    poison = {"now": -1}
    real_autocast, real_forward = Run.autocast, SimCLRSteps.forward

    def autocast(self):
        poison["now"] = self.step
        return real_autocast(self)

    def forward(self, model, views, *rest):
        out = real_forward(self, model, views, *rest)
        return tuple(x * float("nan") for x in out) if poison["now"] == 4 else out

    monkeypatch.setattr(Run, "autocast", autocast)
    monkeypatch.setattr(SimCLRSteps, "forward", forward)
    cfg = tiny_cfg(
        toy_corpus,
        "ssps.enabled=true",
        "ssps.start_epoch=1",
        "ssps.save_queues=true",
        "ssps.sampling=kmeans-repr",
        "ssps.nearest_clusters=0",
        "train.epochs=2",
        "train.nan_policy=skip",
    )
    train(cfg, tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "latest.pt")["train"]
    assert [r["skipped_steps"] for r in epoch_records(tmp_path / "run")] == [0, 1]
    assert state["sampler"], "the queues were not saved"
    tensors = list(tensors_in(state["sampler"]))
    assert any(t.is_floating_point() and t.numel() for t in tensors)
    for value in tensors:
        if value.is_floating_point():
            assert torch.isfinite(value).all()


def tensors_in(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict | list | tuple):
        for value in tree.values() if isinstance(tree, dict) else tree:
            yield from tensors_in(value)


# -- 3. broken data --------------------------------------------------------------------------------------
def tone(seconds: float, channels: int = 1, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return np.stack([wav * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def broken_manifest(corpus: Path, tmp: Path) -> Path:
    """The toy corpus (absolute paths) plus one file of each broken kind."""
    bad = tmp / "bad"
    bad.mkdir()
    sf.write(bad / "full.flac", tone(1.0)[:, 0], SR)
    data = (bad / "full.flac").read_bytes()
    (bad / "truncated.flac").write_bytes(data[: len(data) // 2])  # header fine, decoding fails midway
    sf.write(bad / "full.wav", tone(1.0)[:, 0], SR, subtype="PCM_16")
    data = (bad / "full.wav").read_bytes()
    (bad / "truncated.wav").write_bytes(data[: 44 + 2 * 8000])  # a WAV cut at 0.5 s reads as 0.5 s
    (bad / "zero_length.wav").write_bytes(b"")
    (bad / "garbage.wav").write_bytes(b"RIFF....not audio at all")
    sf.write(bad / "header_only.wav", np.zeros((0,), np.float32), SR)
    sf.write(bad / "rate8k.wav", tone(1.0, rate=8000), 8000)
    sf.write(bad / "stereo.wav", tone(1.0, channels=2), SR)
    sf.write(bad / "very_short.wav", tone(0.05), SR)  # below data.min_duration=0.1
    sf.write(bad / "short.wav", tone(0.2), SR)  # above it, shorter than the 0.5 s crops: wrap-padded
    sf.write(bad / "nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    rows = (corpus / "train.tsv").read_text().splitlines()
    lines = [rows[0]] + [r.replace("\twav/", f"\t{corpus}/wav/") for r in rows[1:]]
    for name in sorted(p.name for p in bad.iterdir() if not p.name.startswith("full")):
        lines.append(f"bad/{name}\t{bad / name}\tbad_{name}\ts\t1.0")
    lines.append(f"bad/missing.wav\t{bad / 'missing.wav'}\tbad_missing\ts\t1.0")
    (tmp / "m.tsv").write_text("\n".join(lines) + "\n")
    return tmp / "m.tsv"


def test_broken_files_are_resampled_mixed_padded_or_skipped_and_counted(toy_corpus, tmp_path):
    manifest = broken_manifest(toy_corpus, tmp_path)
    # Every row is seen: 33 usable rows -> 4 batches of 8 per epoch, two epochs (different orders).
    cfg = load_config(
        overrides=[*TINY, f"data.train_manifest={manifest}", "train.steps_per_epoch=4", "train.epochs=2"]
    )
    train(cfg, tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    # At start (header check): missing, zero-length / garbage, header-only / very short rows are skipped.
    assert "skipped 5 of 35 manifest rows" in log
    assert "'missing': 1, 'unreadable': 2, 'too_short': 2" in log
    # At load time: the truncated FLAC and the NaN file are replaced by other rows, counted per epoch.
    # Expected: every occurrence of the two rows in the epoch's batches (32 draws from 30 rows, so a row
    # may come twice), plus any replacement that is itself one of them.
    run = Run(cfg, tmp_path / "probe", torch.device("cpu"))
    expected = []
    for epoch in (0, 1):
        keys = [key for batch in EpochBatchSampler(run.rows, 8, 0, epoch, steps=4) for key in batch]
        expected.append(sum(len(run.dataset[key]["failed"]) for key in keys))
    assert min(expected) >= 2
    records = epoch_records(tmp_path / "run")
    assert [r["load_failures"] for r in records] == expected
    for epoch in (0, 1):
        assert f"epoch {epoch}: {expected[epoch]} samples could not be loaded and were replaced" in log
    for value in weights(tmp_path / "run" / "latest.pt").values():
        assert torch.isfinite(value.float()).all()


def test_dataset_repairs_each_readable_kind(toy_corpus, tmp_path):
    from ssps.data.dataset import TrainDataset, usable_rows
    from ssps.data.manifest import read_manifest

    manifest = read_manifest(broken_manifest(toy_corpus, tmp_path))
    rows, _ = usable_rows(manifest, 0.1)
    row_of = {manifest.rows[i].utterance: i for i in rows}
    dataset = TrainDataset(manifest, lambda wav, rng: {"views": [wav]}, seed=0, sample_rate=SR, rows=rows)
    item = {name: dataset[(i, 0)] for name, i in row_of.items()}
    assert len(item["bad/rate8k.wav"]["views"][0]) == SR  # 1 s at 8 kHz, resampled to 16 kHz
    stereo = item["bad/stereo.wav"]["views"][0]
    assert stereo.ndim == 1 and np.allclose(stereo, tone(1.0, 2).mean(axis=1), atol=1e-4)  # mixed down
    assert len(item["bad/truncated.wav"]["views"][0]) == 8000  # a cut WAV: the samples that are there
    assert len(item["bad/short.wav"]["views"][0]) == int(0.2 * SR)  # kept; the crops wrap-pad it
    for name in ("bad/truncated.flac", "bad/nan.wav"):
        got = item[name]
        assert got["failed"][0].endswith(name.split("/")[1])
        assert got["index"] != row_of[name] and np.isfinite(got["views"][0]).all()
        # The replacement is drawn from (seed, epoch, index): the same row on every call and every resume.
        assert dataset[(row_of[name], 0)]["index"] == got["index"]
    for name in ("bad/rate8k.wav", "bad/stereo.wav", "bad/truncated.wav", "bad/short.wav"):
        assert item[name]["failed"] == [] and item[name]["index"] == row_of[name]


def test_a_corpus_that_cannot_be_loaded_fails_clearly(tmp_path):
    from ssps.data.dataset import TrainDataset
    from ssps.data.manifest import Utterance, read_manifest, write_manifest

    for n in range(3):
        sf.write(tmp_path / f"{n}.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    write_manifest(tmp_path / "m.tsv", [Utterance(f"u{n}", f"{n}.wav", "s", "e", 1.0) for n in range(3)])
    dataset = TrainDataset(read_manifest(tmp_path / "m.tsv"), lambda w, r: {"views": [w]}, seed=0)
    with pytest.raises(SSPSError, match="8 files in a row could not be loaded"):
        dataset[(0, 0)]


@pytest.mark.parametrize(
    "bad_line, line_no",
    [("1 a", 3), ("2 a b", 3), ("1 a b c", 3), ("yes a b", 3)],
)
def test_malformed_trial_line_names_its_number(tmp_path, bad_line, line_no):
    path = tmp_path / "trials.txt"
    path.write_text(f"1 a b\n0 a c\n{bad_line}\n1 b c\n")
    with pytest.raises(SSPSError, match=rf"trials.txt:{line_no}: expected '1\|0 ENROLL TEST'"):
        read_trials(path)


def test_binary_trial_list_is_refused(tmp_path):
    path = tmp_path / "trials.txt"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(SSPSError, match="trials.txt"):
        read_trials(path)


# -- 5. disk ---------------------------------------------------------------------------------------------
def test_full_disk_fails_loudly_and_keeps_the_previous_checkpoint(toy_corpus, tmp_path, monkeypatch):
    cfg = tiny_cfg(toy_corpus, "train.epochs=1")
    latest = train(cfg, tmp_path / "run")
    before = latest.read_bytes()

    def full(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"partial")  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", full)
    with pytest.raises(
        SSPSError, match=r"epoch_0001.pt: cannot write checkpoint \(No space left on device\)"
    ):
        train(tiny_cfg(toy_corpus, "train.epochs=2"), tmp_path / "run", resume=True)
    assert latest.read_bytes() == before
    assert not list((tmp_path / "run").glob(".*.tmp"))  # the partial temporary file is removed


def test_unwritable_directory_fails_loudly(toy_corpus, tmp_path):
    # Root ignores chmod, so the directory is made unusable another way: its parent is a regular file.
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SSPSError, match="cannot write checkpoint"):
        checkpoint_module.save_checkpoint(tmp_path / "file" / "run" / "latest.pt", tiny_cfg(toy_corpus), {})


def test_failed_rename_keeps_the_previous_checkpoint(toy_corpus, tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    cfg = tiny_cfg(toy_corpus)
    checkpoint_module.save_checkpoint(path, cfg, {"w": torch.ones(3)}, epoch=1)

    def refuse(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("ssps.utils.files.os.replace", refuse)
    with pytest.raises(SSPSError, match="Read-only file system"):
        checkpoint_module.save_checkpoint(path, cfg, {"w": torch.zeros(3)}, epoch=2)
    assert load_checkpoint(path)["epoch"] == 1 and torch.equal(weights(path)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]


# -- 6. untrusted checkpoints ----------------------------------------------------------------------------
class _Exploit:
    """Unpickling this calls ``Path.touch(marker)``: code execution, if the loader allowed it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_checkpoint_that_runs_code_is_refused(tmp_path, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "ssps-checkpoint", "version": 1, "config": {}, "payload": _Exploit(marker)}
    if container == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # torch's legacy format
    assert not marker.exists()
    with pytest.raises(SSPSError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and "evil.pt" in message
    assert "refused to load: holds objects other than plain data and tensors" in message
    assert not marker.exists()
    # The same file through the CLI path of a resume: refused before anything runs.
    (tmp_path / "run").mkdir()
    os.replace(path, tmp_path / "run" / "latest.pt")
    with pytest.raises(SSPSError, match="refused to load"):
        train(load_config(overrides=TINY), tmp_path / "run", resume=True)
    assert not marker.exists()
    # Sanity: the exploit does run code when unpickled without the guard.
    pickle.loads(pickle.dumps(_Exploit(marker)))
    assert marker.exists()
