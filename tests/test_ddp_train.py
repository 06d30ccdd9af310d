"""Training on 2 CPU processes (gloo) equals training on 1 with the same global batch.

Real training mode through the trainer: SimCLR with negatives gathered across ranks, DINO (teacher,
centre, head BatchNorm), BatchNorm over the global batch (``train.sync_batchnorm``), and SSPS with queues
written from both ranks and draws that do not depend on the number of ranks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port, torchrun_env
from test_train import TINY

from ssps.checkpoint import load_checkpoint
from ssps.config import load_config
from ssps.train.trainer import train

WORLD = 2
KINDS = {  # extra overrides, (epoch, step) at the end
    "simclr": ([], (2, 6)),
    # One step: DINO's sharpened targets (T = 0.04) amplify rounding from the reduction order; measured
    # here: 4.8e-7 apart after 1 step, 3e-4 after 6, on both sides of equal arithmetic.
    "dino": (["method.name=dino", "train.epochs=1", "train.steps_per_epoch=1"], (1, 1)),
    # A fill step, then an SSPS step: the same draws give losses equal to 1e-6, but T = 0.03 on random
    # pseudo-positives amplifies rounding over later steps (measured: 2.6e-3 apart after 3 SSPS steps).
    "simclr-ssps": (
        ["ssps.enabled=true", "ssps.start_epoch=1", "ssps.sampling=kmeans-repr", "train.steps_per_epoch=1"],
        (2, 2),
    ),
}
# SGD: Adam's m / sqrt(v) turns a rounding-level gradient of either sign into a full lr-sized step, which
# would compare the reduction order rather than the training.
RUN = [
    "optim.name=sgd",
    "optim.lr=0.05",
    "train.sync_batchnorm=true",
    "train.threads=1",
    "train.epochs=2",
    "ssps.queue_dtype=float32",
]


def _overrides(corpus: Path, kind: str) -> list[str]:
    return [*TINY, *RUN, *KINDS[kind][0], f"data.train_manifest={corpus / 'train.tsv'}"]


def _train_on_two_ranks(corpus: Path, kind: str, out: Path) -> Path:
    config = out.parent / f"{kind}.yaml"
    config.write_text("{}\n")
    port, procs = free_port(), []
    for rank in range(WORLD):
        env = torchrun_env(rank, WORLD, port)
        cmd = [
            sys.executable,
            "-m",
            "ssps",
            "train",
            str(config),
            *_overrides(corpus, kind),
            "--out",
            str(out),
        ]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        logs = [p.communicate(timeout=300)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return out / "latest.pt"


def _compare(want: dict, got: dict, what: str) -> None:
    assert want.keys() == got.keys(), what
    for key, value in want.items():
        if isinstance(value, dict):
            _compare(value, got[key], f"{what}.{key}")
        elif value.is_floating_point():
            assert torch.allclose(value, got[key], atol=2e-5, rtol=1e-4), f"{what}.{key}"
        else:
            assert torch.equal(value, got[key]), f"{what}.{key}"


@pytest.mark.parametrize(
    "kind",
    [
        "simclr",
        pytest.param("dino", marks=pytest.mark.slow),
        pytest.param("simclr-ssps", marks=pytest.mark.slow),
    ],
)
def test_two_ranks_train_like_one(toy_corpus, tmp_path, kind):
    one = load_checkpoint(train(load_config(overrides=_overrides(toy_corpus, kind)), tmp_path / "one"))
    two = load_checkpoint(_train_on_two_ranks(toy_corpus, kind, tmp_path / "two"))
    assert (one["epoch"], one["step"]) == (two["epoch"], two["step"]) == KINDS[kind][1]
    _compare(one["train"]["method"], two["train"]["method"], "method")
    if "sampler" in one["train"]:
        _compare(one["train"]["sampler"], two["train"]["sampler"], "sampler")
    # BatchNorm really trained (running statistics moved), so the equality covers synchronised BN.
    bn = [k for k in one["train"]["method"] if k.endswith("running_mean")]
    assert bn and any(one["train"]["method"][k].abs().sum() > 0 for k in bn)


def _skip_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as torch_dist

    from ssps import dist

    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        # nan_policy=skip: rank 1 alone has a non-finite loss; both ranks must skip the step together.
        loss = torch.tensor(float("nan") if rank == 1 else 1.0)
        decisions = [dist.all_true(bool(torch.isfinite(loss))), dist.all_true(True)]
        torch.save(decisions, Path(out_dir) / f"skip{rank}.pt")
    finally:
        torch_dist.destroy_process_group()


def test_a_step_is_skipped_on_every_rank_or_none(tmp_path):
    import torch.multiprocessing as mp
    from conftest import join_processes

    ctx = mp.start_processes(
        _skip_worker,
        args=(str(tmp_path / "init"), str(tmp_path)),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    join_processes(ctx, timeout_s=120)
    assert [torch.load(tmp_path / f"skip{r}.pt") for r in range(WORLD)] == [[False, True], [False, True]]
