"""Distributed faults: with 2 gloo ranks training, SIGKILL one; the other must exit, not hang.

The ranks are started as torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the
environment) but without torchrun's agent, whose own supervision would kill the survivor for us: what is
tested is that ssps itself notices. ``train.dist_timeout`` bounds the wait when no error arrives at all.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, torchrun_env
from test_train import TINY

DIST_TIMEOUT = 10  # seconds
RUN = ["train.steps_per_epoch=1000", "train.epochs=5", "train.checkpoint_every_steps=5", "train.threads=1"]


def start_ranks(corpus: Path, tmp: Path) -> list[subprocess.Popen]:
    config = tmp / "c.yaml"
    config.write_text("{}\n")
    port = free_port()
    procs = []
    for rank in range(2):
        env = torchrun_env(rank, 2, port)
        cmd = [
            sys.executable,
            "-m",
            "ssps",
            "train",
            str(config),
            *TINY,
            *RUN,
            f"train.dist_timeout={DIST_TIMEOUT}",
            f"data.train_manifest={corpus / 'train.tsv'}",
            "--out",
            str(tmp / "run"),
        ]
        log = open(tmp / f"rank{rank}.log", "wb")  # noqa: SIM115 - closed with the process below
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


@pytest.mark.parametrize(
    "victim, fault",
    [
        pytest.param(1, signal.SIGKILL, id="kill-rank1"),
        pytest.param(0, signal.SIGKILL, id="kill-rank0"),
        pytest.param(1, signal.SIGSTOP, id="freeze-rank1", marks=pytest.mark.slow),  # waits the timeout
    ],
)
def test_a_lost_rank_makes_the_other_exit_with_a_clear_message(toy_corpus, tmp_path, victim, fault):
    """SIGKILL: the socket closes and the survivor fails at once. SIGSTOP (a hung rank): after the timeout."""
    procs = start_ranks(toy_corpus, tmp_path)
    try:
        # Wait until both ranks are inside the training loop: a mid-run checkpoint has been written.
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "latest.pt").exists():
            assert time.monotonic() < deadline, "training did not start"
            assert all(p.poll() is None for p in procs), (tmp_path / "rank0.log").read_text()
            time.sleep(0.05)
        procs[victim].send_signal(fault)
        killed_at = time.monotonic()
        survivor = procs[1 - victim]
        code = survivor.wait(timeout=DIST_TIMEOUT + 30)
        waited = time.monotonic() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    out = (tmp_path / f"rank{1 - victim}.log").read_text()
    last = out.strip().splitlines()[-1]
    print(f"{fault.name} rank {victim}: survivor exited with {code} after {waited:.1f} s: {last}")
    assert code == 2, out
    prefix = f"ssps train: error: rank {1 - victim}: lost contact with the other ranks at step "
    assert last.startswith(prefix), out
    assert "latest.pt holds the last complete checkpoint: restart with --resume" in last
    assert waited < DIST_TIMEOUT + 30
