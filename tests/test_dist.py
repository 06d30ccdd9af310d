"""Two CPU processes (gloo) equal one: the gathered SimCLR loss, one DDP step, and the DINO centre.

The model is the tiny TDNN SimCLR in eval mode: BatchNorm then uses its running statistics, so a
sample's embedding does not depend on which rank's half of the batch it is in (in train mode the
per-rank batch statistics would differ from the global ones unless SyncBatchNorm is used).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from conftest import join_processes
from torch.nn.parallel import DistributedDataParallel

from ssps import dist
from ssps.config import load_config
from ssps.methods import build_method
from ssps.methods.losses import DINOCenter, nt_xent

WORLD = 2
GLOBAL_BATCH, SAMPLES = 8, 4000  # 0.25 s crops at 16 kHz
CENTER_ROWS = (3, 5)  # unequal per-rank batches for the centre update
TINY = ["encoder.name=tdnn", "encoder.channels=32", "encoder.embed_dim=64", "method.name=simclr"]


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_method(load_config(overrides=TINY)).eval()


def make_data() -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(GLOBAL_BATCH, SAMPLES, generator=g) for _ in range(2)]
    return views, torch.randn(sum(CENTER_ROWS), 16, generator=g)


def one_step(model: torch.nn.Module, views: list[torch.Tensor], detach_positives: bool) -> dict:
    """One SGD step on the SimCLR loss; ``model`` may be wrapped in DDP."""
    method = getattr(model, "module", model)
    optimizer = torch.optim.SGD(method.trainable_parameters(), lr=0.5)
    anchors, positives = model(views)
    if detach_positives:  # SSPS: stored positives carry no gradient
        positives = positives.detach()
    loss = method.loss(anchors, positives, temperature=0.1)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        clip_form = nt_xent(anchors, positives, 0.1, same_view_negatives=False)
    return {
        "loss": loss.detach(),
        "clip_form": clip_form,
        "params": {k: v.detach().clone() for k, v in method.named_parameters()},
    }


def worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        result = {"rank": dist.rank(), "world_size": dist.world_size()}
        views, center_logits = make_data()
        n = GLOBAL_BATCH // WORLD
        local = [v[rank * n : (rank + 1) * n] for v in views]
        for detach in (False, True):
            model = DistributedDataParallel(make_model())
            result[f"detach={detach}"] = one_step(model, local, detach)
        center = DINOCenter(16)
        start = sum(CENTER_ROWS[:rank])
        center.update(center_logits[start : start + CENTER_ROWS[rank]], 0.9)
        result["center"] = center.center
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        torch_dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    workers = mp.start_processes(
        worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=False, start_method="spawn"
    )
    # The single-process reference on the whole global batch, computed while the workers run.
    views, center_logits = make_data()
    center = DINOCenter(16)
    center.update(center_logits, 0.9)
    expected = {detach: one_step(make_model(), views, detach) for detach in (False, True)}
    join_processes(workers, timeout_s=120)
    for detach, want in expected.items():
        for rank in range(WORLD):
            got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
            assert (got["rank"], got["world_size"]) == (rank, WORLD)
            step = got[f"detach={detach}"]
            assert step["loss"].item() == pytest.approx(want["loss"].item(), abs=1e-5)
            assert step["clip_form"].item() == pytest.approx(want["clip_form"].item(), abs=1e-5)
            for name, value in want["params"].items():
                assert torch.allclose(step["params"][name], value, atol=1e-5, rtol=0), (detach, rank, name)
            assert torch.allclose(got["center"], center.center, atol=1e-6)
    # The step did move the parameters, so the comparison above is not between two initial models.
    initial = dict(make_model().named_parameters())
    assert any(not torch.allclose(initial[k], v, atol=1e-4) for k, v in expected[False]["params"].items())
