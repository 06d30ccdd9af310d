"""Kill anywhere: SIGKILL a training process again and again, resume each time, end with the same weights.

Each round starts ``python -m ssps train`` (with ``--resume`` once latest.pt exists) and kills it with
SIGKILL at one of three kinds of moment, in turn:

* ``write``: as soon as a checkpoint's temporary file appears, i.e. during ``torch.save`` / fsync / rename;
* ``step``: a random 0-150 ms after a new checkpoint appeared, i.e. anywhere inside a training step;
* ``startup``: a random 0-2 s after the process started (imports, config, data checks, resume).

After the last kill the run is resumed to the end; its weights must equal those of an uninterrupted run
(CPU, within 1e-6), and for SSPS runs (SimCLR and DINO, queues saved in latest.pt) so must the queues and
clusters. The default suite runs 3 kills per run kind; the 20-kill loop is marked slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import TINY

from ssps.checkpoint import load_checkpoint
from ssps.config import load_config
from ssps.errors import SSPSError
from ssps.train.trainer import train

# A model with 2 MB checkpoints and ~0.1 s steps: big enough that kills land inside writes and steps.
KILL_RUN = [
    "encoder.channels=128",
    "train.steps_per_epoch=8",
    "train.epochs=3",
    "train.checkpoint_every_steps=1",
    "train.threads=1",
    "data.augment.strategy=both",
]
MOMENTS = ("write", "step", "startup")
# Run kinds: SSPS on from epoch 1 (epoch 0 fills the queues), so kills land in fill and SSPS epochs.
KINDS = {
    "simclr": [],
    "simclr-ssps": ["ssps.enabled=true", "ssps.start_epoch=1", "ssps.sampling=kmeans-repr"],
    "dino-ssps": [
        "method.name=dino",
        "optim.name=sgd",
        "ssps.enabled=true",
        "ssps.start_epoch=1",
        "ssps.sampling=knn",
        "ssps.exclude_same_session=true",
        "ssps.session_pooling=true",
    ],
}
KIND = "simclr"  # set by the test


def overrides(corpus: Path) -> list[str]:
    return [*TINY, *KILL_RUN, *KINDS[KIND], f"data.train_manifest={corpus / 'train.tsv'}"]


def start(corpus: Path, out: Path) -> subprocess.Popen:
    resume = ["--resume"] if (out / "latest.pt").exists() else []
    config = out.parent / "kill.yaml"  # every setting comes from the overrides
    config.write_text("{}\n")
    cmd = [sys.executable, "-m", "ssps", "train", str(config), *overrides(corpus), "--out", str(out), *resume]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def saved_step(out: Path) -> int:
    try:
        return load_checkpoint(out / "latest.pt")["step"]
    except SSPSError:  # not written yet
        return -1


def wait_for(
    proc: subprocess.Popen, moment: str, out: Path, stale: set[Path], rng: np.random.Generator
) -> bool:
    """Sleep until the chosen moment; False if the process finished first."""
    deadline = time.monotonic() + 60
    if moment == "startup":
        end = time.monotonic() + rng.uniform(0, 2)
        while time.monotonic() < end:
            if proc.poll() is not None:
                return False
            time.sleep(0.005)
        return True
    latest = out / "latest.pt"
    mtime = latest.stat().st_mtime_ns if latest.exists() else 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if moment == "write" and set(out.glob(".*.pt.*.tmp")) - stale:
            return True
        if moment == "step" and latest.exists() and latest.stat().st_mtime_ns != mtime:
            time.sleep(rng.uniform(0, 0.15))
            return True
        time.sleep(0.0005)
    raise AssertionError(f"no {moment} moment within 60 s")


def kill_loop(corpus: Path, out: Path, kills: int, seed: int) -> dict[str, int]:
    """Kill ``kills`` times, then resume to the end. Returns what was observed."""
    rng = np.random.default_rng(seed)
    seen = {"kills": 0, "mid_write": 0, "finished_early": 0, "steps_at_kill": []}
    while seen["kills"] < kills:
        moment = MOMENTS[seen["kills"] % len(MOMENTS)]
        stale = set(out.glob(".*.pt.*.tmp"))  # left by an earlier round; the resume removes them
        proc = start(corpus, out)
        if not wait_for(proc, moment, out, stale, rng):
            assert proc.returncode == 0, proc.stderr.read().decode()
            seen["finished_early"] += 1
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        seen["kills"] += 1
        # A temporary file left behind proves the kill hit a checkpoint write (the cleanup never ran).
        seen["mid_write"] += bool(set(out.glob(".*.pt.*.tmp")) - stale)
        seen["steps_at_kill"].append(saved_step(out))
    proc = start(corpus, out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert not list(out.glob(".*.tmp")), "stale temporary files were not cleaned up"
    return seen


def check(corpus: Path, tmp: Path, kills: int, seed: int) -> dict:
    seen = kill_loop(corpus, tmp / "killed", kills, seed)
    reference = train(load_config(overrides=overrides(corpus)), tmp / "reference")
    a = load_checkpoint(reference)
    b = load_checkpoint(tmp / "killed" / "latest.pt")
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (3, 24)
    pairs = [(a["embedder"], b["embedder"]), (a["train"]["method"], b["train"]["method"])]
    if "sampler" in a["train"]:
        assert "sampler" in b["train"]
        pairs += [(a["train"]["sampler"]["_extra_state"], b["train"]["sampler"]["_extra_state"])]
    for want, got in pairs:
        assert want.keys() == got.keys()
        for key, value in want.items():
            assert value.shape == got[key].shape, key
            assert torch.allclose(value.float(), got[key].float(), atol=1e-6, rtol=0), key
    print(f"kill loop ({kills} kills, seed {seed}): {seen}")
    return seen


@pytest.mark.parametrize(
    "kind", ["simclr", "dino-ssps", pytest.param("simclr-ssps", marks=pytest.mark.slow)]
)  # ~60 s each on the shared 2-core machine; tests/test_ssps_resume.py covers SimCLR + SSPS quickly
def test_three_kills_resume_to_identical_weights(toy_corpus, tmp_path, kind, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "KIND", kind)
    seen = check(toy_corpus, tmp_path, kills=3, seed=0)
    assert seen["kills"] == 3


@pytest.mark.slow
def test_twenty_kills_resume_to_identical_weights(toy_corpus, tmp_path):
    seen = check(toy_corpus, tmp_path, kills=20, seed=1)
    assert seen["kills"] == 20 and seen["finished_early"] == 0
    assert seen["mid_write"] >= 1  # at least one kill really landed inside a checkpoint write
