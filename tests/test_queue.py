"""Memory queues: ring-buffer bookkeeping, normalised reference writes, and 2-process gloo == 1 process."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ssps.config import SSPSConfig
from ssps.sampling.kmeans import spherical_kmeans
from ssps.sampling.queue import PositiveQueue, ReferenceQueue
from ssps.sampling.ssps import SSPSSampler


def test_positive_queue_wraps_around():
    q = PositiveQueue(size=5, shape=(2,), dtype=torch.float32)
    assert not q.valid_mask().any()
    q.write(torch.tensor([0, 1, 2]), torch.arange(6.0).view(3, 2))
    assert q.valid_mask().tolist() == [True, True, True, False, False]
    q.write(torch.tensor([3, 4, 5]), torch.arange(6.0, 12.0).view(3, 2))
    assert q.indices.tolist() == [5, 1, 2, 3, 4]
    assert int(q.ptr) == 1
    assert q.embeddings[0].tolist() == [10.0, 11.0]  # index 5's row went to slot 0
    assert q.valid_mask().all()


def test_positive_queue_batch_larger_than_queue_keeps_newest():
    q = PositiveQueue(size=4, shape=(1,), dtype=torch.float32)
    q.write(torch.tensor([100]), torch.tensor([[100.0]]))
    idx = torch.arange(7)
    q.write(idx, idx.float().view(7, 1))
    kept = sorted(q.indices.tolist())
    assert kept == [3, 4, 5, 6]
    for slot in range(4):  # every slot holds the row of the index it names
        assert q.embeddings[slot, 0].item() == q.indices[slot].item()
    assert int(q.ptr) == (1 + 4) % 4


def test_positive_queue_multi_dim_entries_and_nbytes():
    q = PositiveQueue(size=3, shape=(2, 4), dtype=torch.float16)
    q.write(torch.tensor([9]), torch.ones(1, 2, 4))
    assert q.embeddings.shape == (3, 2, 4) and q.embeddings.dtype == torch.float16
    assert q.nbytes == 3 * 8 * 2 + 3 * 8 + 8


def test_reference_queue_normalises_and_last_duplicate_wins():
    q = ReferenceQueue(num_items=6, dim=3, dtype=torch.float32)
    q.write(torch.tensor([1, 4, 1]), torch.tensor([[3.0, 0, 0], [0, 2.0, 0], [0, 0, 5.0]]))
    assert q.filled.tolist() == [False, True, False, False, True, False]
    assert torch.allclose(q.embeddings[1], torch.tensor([0.0, 0, 1]))  # the later row for index 1
    assert torch.allclose(q.embeddings[4], torch.tensor([0.0, 1, 0]))
    assert q.embeddings[0].abs().sum() == 0
    assert q.nbytes == 6 * 3 * 4 + 6


def test_reference_queue_float16_storage():
    q = ReferenceQueue(num_items=4, dim=8)
    assert q.embeddings.dtype == torch.float16
    q.write(torch.tensor([2]), torch.randn(1, 8))
    assert abs(q.embeddings[2].float().norm().item() - 1) < 1e-3


# ---- distributed: two gloo processes must hold exactly what one process holds -----------------------

STEPS, PER_RANK, N, D = 6, 5, 40, 8


def _global_batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    idx = torch.randperm(N, generator=g)[: 2 * PER_RANK]
    return idx, torch.randn(2 * PER_RANK, D, generator=g), torch.randn(2 * PER_RANK, 3, generator=g)


def _fill_and_cluster(rank: int, world: int) -> dict[str, torch.Tensor]:
    cfg = SSPSConfig(num_clusters=4, nearest_clusters=1, positive_queue_size=16, queue_dtype="float32")
    sampler = SSPSSampler(cfg, num_items=N, ref_dim=D, pos_shape=(3,))
    for step in range(STEPS):
        idx, ref, pos = _global_batch(step)
        part = slice(rank * PER_RANK, (rank + 1) * PER_RANK) if world > 1 else slice(None)
        sampler.write_reference(idx[part], ref[part])
        sampler.write_positive(idx[part], pos[part])
    sampler.cluster(seed=3)
    filled = sampler.reference.embeddings[sampler.reference.filled]
    res = spherical_kmeans(filled, 5, iterations=4, seed=1)
    out = {k: v.clone() for k, v in sampler.queue_state().items()}
    out["km_centroids"], out["km_assignments"] = res.centroids, res.assignments
    return out


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(_fill_and_cluster(rank, world), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch_dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = _fill_and_cluster(0, 1)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert set(ranks[0]) == set(single)
    for key, value in single.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        assert torch.allclose(ranks[0][key].float(), value.float(), atol=1e-6), key
    assert (single["positive.indices"] >= 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_reference_rows_are_unit_norm(dtype):
    q = ReferenceQueue(num_items=10, dim=4, dtype=dtype)
    q.write(torch.arange(10), torch.randn(10, 4) * 7)
    norms = q.embeddings.float().norm(dim=1)
    assert torch.allclose(norms, torch.ones(10), atol=2e-3)
    assert torch.allclose(q.embeddings.float(), F.normalize(q.embeddings.float(), dim=1), atol=2e-3)


def test_channel_statistics_tell_recordings_apart():
    from ssps.sampling.channel import channel_statistics, fingerprint_keys

    # Two "recordings": the same noise through two different filters; each crop's fingerprint is nearest
    # to the other crops of its own recording.
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(8, 16000, generator=g)
    low = torch.nn.functional.conv1d(wav[:4, None], torch.ones(1, 1, 8) / 8, padding=4)[:, 0, :16000]
    keys = fingerprint_keys(channel_statistics(torch.cat([low, wav[4:]])))
    sim = keys @ keys.T
    sim.fill_diagonal_(-2)
    group = torch.tensor([0] * 4 + [1] * 4)
    assert (group[sim.argmax(1)] == group).all()
