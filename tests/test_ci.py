"""The test harness itself: under CI=true a missing tool fails instead of skipping; bounded waits."""

from __future__ import annotations

import time

import conftest
import pytest
import torch.multiprocessing as mp


def test_missing_tool_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-xyz not installed"):
        conftest.require("sh", "no-such-tool-xyz")
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true: module:no_such_module_xyz not installed"):
        conftest.require("module:no_such_module_xyz")
    conftest.require("sh", "module:torch")  # present: nothing happens


def _sleeper(rank: int) -> None:
    time.sleep(60)


def test_hung_workers_are_killed_after_the_timeout():
    workers = mp.start_processes(_sleeper, nprocs=1, join=False, start_method="spawn")
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="still running after 2 s"):
        conftest.join_processes(workers, timeout_s=2)
    assert time.monotonic() - t0 < 30
    workers.processes[0].join(timeout=10)
    assert not workers.processes[0].is_alive()
