"""The demo's training job, before / after, in one run: utt/s of 2 parallel 1-thread jobs (as the demo runs
them) on the baseline tree (``--baseline``, a git revision, default ``main``) and on this tree, the same
seed and config; the per-step losses must be equal. Then a profile of one step of this tree, by stage.

    python benchmarks/bench_demo_step.py [--baseline main] [--steps 25] [--manifest data/default/train.tsv]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def job_command(tree: Path, out: Path, manifest: Path, steps: int, config: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ssps",
        "train",
        str(tree / "configs" / config),
        f"data.train_manifest={manifest}",
        "data.val_trials=",
        f"train.steps_per_epoch={steps}",
        "train.epochs=1",
        "train.log_every=1",
        "train.threads=1",
        "--out",
        str(out),
    ]


def run_pair(tree: Path, work: Path, manifest: Path, steps: int, config: str) -> dict:
    """Two jobs at once, one thread each; their epoch utt/s and job 0's per-step losses."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            job_command(tree, work / f"job{j}", manifest, steps, config),
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / f"job{j}.log", "w"),
        )
        for j in range(2)
    ]
    if any(p.wait() for p in procs):
        raise SystemExit(f"a training job failed; see {work}/job*.log")
    wall = time.perf_counter() - t0
    rates, losses = [], []
    for j in range(2):
        records = [json.loads(line) for line in (work / f"job{j}" / "metrics.jsonl").read_text().splitlines()]
        rates.append(next(r["utt_per_s"] for r in records if r["kind"] == "epoch"))
        if j == 0:
            losses = [r["loss"] for r in records if r["kind"] == "train"]
    return {"utt_per_s": rates, "wall_s": round(wall, 1), "losses": losses}


def profile(manifest: Path, steps: int, config: str) -> dict[str, float]:
    """CPU seconds per step of this tree, by stage (SimCLR + SSPS config: the sampler's calls included)."""
    import numpy as np
    import torch

    from ssps.config import load_config
    from ssps.data.dataset import EpochBatchSampler, collate
    from ssps.train.run import Run
    from ssps.utils.memory import keep_freed_memory

    keep_freed_memory()  # as `ssps train` does
    torch.set_num_threads(1)
    cfg = load_config(REPO / "configs" / config, [f"data.train_manifest={manifest}", "data.val_trials="])
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp), torch.device("cpu"))
    ds, method, opt = run.dataset, run.method, run.optimizer
    augment, ds.views.augment = ds.views.augment, None  # crops alone, then the augmentation alone
    batches = list(EpochBatchSampler(run.rows, cfg.train.batch_size, cfg.train.seed, 0, steps=steps))
    clock, t = (
        time.process_time,
        dict.fromkeys(
            [
                "read + crop",
                "augmentation",
                "collate",
                "front end",
                "encoder forward",
                "loss",
                "backward + step",
            ],
            0.0,
        ),
    )
    method.train()
    for keys in batches:
        t0 = clock()
        items = [ds[k] for k in keys]
        t1 = clock()
        if augment is not None:  # the same kind of draws as in training; only the cost is measured here
            for it, (index, epoch) in zip(items, keys, strict=True):
                rng = np.random.default_rng([cfg.train.seed, epoch, index])
                it["views"] = [augment(v, rng) for v in it["views"]]
        t2 = clock()
        batch = collate(items)
        t3 = clock()
        wav = torch.cat(batch["views"])
        feats = method.embedder.features(wav)
        t4 = clock()
        z = method.projector(method.embedder.encoder(feats)).chunk(2)
        t5 = clock()
        loss = run.steps.loss(z[0], z[1], run.teacher_temperature)
        t6 = clock()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t7 = clock()
        for k, (a, b) in zip(
            t, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6), (t6, t7)], strict=True
        ):
            t[k] += (b - a) / steps
    ds.views.augment = augment
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision of the 'before' tree")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--config", default="simclr.yaml", help="a file in configs/")
    parser.add_argument("--manifest", default="data/default/train.tsv")
    parser.add_argument("--out", help="write the figures as JSON")
    parser.add_argument("--profile-only", action="store_true", help="only the per-stage profile of this tree")
    args = parser.parse_args()
    if args.profile_only:
        stages = profile(Path(args.manifest).resolve(), args.steps, args.config)
        total = sum(stages.values())
        print("| stage | CPU s / step | share |\n|---|---|---|")
        for k, v in stages.items():
            print(f"| {k} | {v:.3f} | {100 * v / total:.0f} % |")
        print(f"| total | {total:.3f} | {128 / total:.0f} utt per CPU-second |")
        return
    manifest = Path(args.manifest).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.baseline], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        results = {}
        for name, tree in (("before", base), ("after", REPO)):
            work = Path(tmp) / f"{name}_runs"
            work.mkdir()
            results[name] = run_pair(tree, work, manifest, args.steps, args.config)
    before, after = results["before"], results["after"]
    n = min(len(before["losses"]), len(after["losses"]))
    diff = max(abs(a - b) for a, b in zip(before["losses"][:n], after["losses"][:n], strict=True))
    mean = {k: sum(v["utt_per_s"]) / 2 for k, v in results.items()}
    print(
        f"| tree | job utt/s (2 jobs, 1 thread each) | wall s ({args.steps} steps x 128, start-up included) |"
    )
    print("|---|---|---|")
    for name, label in (("before", f"before ({args.baseline})"), ("after", "after (this tree)")):
        r = results[name]
        rates = " / ".join(f"{x:.1f}" for x in r["utt_per_s"])
        print(f"| {label} | {rates} (mean {mean[name]:.1f}) | {r['wall_s']} |")
    print(
        f"speed-up {mean['after'] / mean['before']:.2f}x; "
        f"per-step losses over {n} steps: max |diff| = {diff:.3g}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps({**results, "max_loss_diff": diff}, indent=2))
    if diff > 0:
        raise SystemExit("the per-step losses differ: the fast path changed the results")


if __name__ == "__main__":
    main()
