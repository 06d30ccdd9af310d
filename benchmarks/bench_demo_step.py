"""The demo's training job, before / after, in one run, on the baseline tree (``--baseline``, a git
revision, default ``main``) and on this tree:

- ``cpu``: CPU seconds per step by stage (loader read + crop, augmentation, collate, front end, encoder
  forward, loss, backward + step), each tree in its own process with one thread. CPU time, so the figure
  holds on a shared machine where other users take the cores.
- ``wall``: utt/s of 2 parallel 1-thread ``ssps train`` jobs (as the demo runs them), the same seed and
  config; job 0's per-step losses must be equal in both trees.

    python benchmarks/bench_demo_step.py [--mode both|cpu|wall] [--baseline main] [--steps 25] [--set K=V]

Each tree trains its own ``configs/CONFIG``; ``--set`` overrides both alike. Since commit ``4fed15b`` this
tree's ``simclr.yaml`` has 80 mels and older trees' 40: compare them with ``--set features.n_mels=80``.
``--after-set`` overrides the after tree only (e.g. ``train.amp=bf16``, which changes the arithmetic: the
losses are then reported, not required equal); use it with ``--mode wall`` (the ``cpu`` mode times the
stages itself, outside the trainer's autocast).
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


def job_command(
    tree: Path, out: Path, manifest: Path, steps: int, config: str, settings: tuple[str, ...] = ()
) -> list[str]:
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
        *settings,
        "--out",
        str(out),
    ]


def run_pair(
    tree: Path, work: Path, manifest: Path, steps: int, config: str, settings: tuple[str, ...] = ()
) -> dict:
    """Two jobs at once, one thread each; their epoch utt/s and job 0's per-step losses."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            job_command(tree, work / f"job{j}", manifest, steps, config, settings),
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


def profile(manifest: Path, steps: int, config: str, settings: tuple[str, ...] = ()) -> dict[str, float]:
    """CPU seconds per step of the imported ``ssps`` tree, by stage (one thread)."""
    import numpy as np
    import torch

    import ssps
    from ssps.config import load_config
    from ssps.data.dataset import EpochBatchSampler, collate
    from ssps.train.run import Run

    try:
        from ssps.utils.memory import keep_freed_memory

        keep_freed_memory()  # as `ssps train` does
    except ImportError:  # a tree from before it
        pass
    torch.set_num_threads(1)
    configs = Path(ssps.__file__).resolve().parents[1] / "configs"  # the profiled tree's own configs
    cfg = load_config(configs / config, [f"data.train_manifest={manifest}", "data.val_trials=", *settings])
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp), torch.device("cpu"))
    ds, method, opt = run.dataset, run.method, run.optimizer
    augment, ds.views.augment = ds.views.augment, None  # crops alone, then the augmentation alone
    # One more batch than counted: the first step warms up (allocations, oneDNN primitives) and is left out.
    batches = list(EpochBatchSampler(run.rows, cfg.train.batch_size, cfg.train.seed, 0, steps=steps + 1))
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
    for n, keys in enumerate(batches):
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
            t[k] += (b - a) / steps if n else 0.0
    ds.views.augment = augment
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision of the 'before' tree")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--config", default="simclr.yaml", help="a file in configs/")
    parser.add_argument("--manifest", default="data/default/train.tsv")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for both trees (repeatable), e.g. features.n_mels=80",
    )
    parser.add_argument(
        "--after-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for the after tree only, e.g. train.amp=bf16: the losses then may differ (reported)",
    )
    parser.add_argument("--out", help="write the figures as JSON")
    parser.add_argument("--profile-only", action="store_true", help=argparse.SUPPRESS)  # one tree, as JSON
    parser.add_argument("--mode", choices=["both", "cpu", "wall"], default="both")
    args = parser.parse_args()
    manifest = Path(args.manifest).resolve()
    if args.profile_only:
        print(json.dumps(profile(manifest, args.steps, args.config, tuple(args.set))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        trees = (("before", checkout(args.baseline, Path(tmp) / "baseline")), ("after", REPO))
        settings = {"before": tuple(args.set), "after": (*args.set, *args.after_set)}
        out: dict = {}
        if args.mode in ("both", "cpu"):
            out["cpu"] = {
                name: cpu_profile(tree, manifest, min(args.steps, 5), args.config, settings[name])
                for name, tree in trees
            }
            print_cpu(out["cpu"], args.baseline)
        if args.mode in ("both", "wall"):
            out["wall"] = {}
            for name, tree in trees:
                work = Path(tmp) / f"{name}_runs"
                work.mkdir()
                out["wall"][name] = run_pair(tree, work, manifest, args.steps, args.config, settings[name])
            failed = print_wall(out["wall"], args.baseline, args.steps)
            if failed and not args.after_set:
                raise SystemExit("the per-step losses differ: the fast path changed the results")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


def checkout(revision: str, folder: Path) -> Path:
    """The tree of a git revision of this repository, extracted into ``folder``."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def cpu_profile(
    tree: Path, manifest: Path, steps: int, config: str, settings: tuple[str, ...] = ()
) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--profile-only", "--steps", str(steps), "--config", config]
    cmd += [f"--set={s}" for s in settings]
    done = subprocess.run(
        [*cmd, "--manifest", str(manifest)], cwd=tree, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_cpu(cpu: dict, baseline: str) -> None:
    print(f"| stage (CPU s / step, 1 thread) | before ({baseline}) | after (this tree) |\n|---|---|---|")
    for stage in cpu["before"]:
        print(f"| {stage} | {cpu['before'][stage]:.3f} | {cpu['after'][stage]:.3f} |")
    total = {k: sum(v.values()) for k, v in cpu.items()}
    print(f"| total | {total['before']:.3f} | {total['after']:.3f} |")
    print(
        f"utt per CPU-second (batch 128): {128 / total['before']:.0f} -> {128 / total['after']:.0f} "
        f"({total['before'] / total['after']:.2f}x)"
    )


def print_wall(results: dict, baseline: str, steps: int) -> bool:
    before, after = results["before"], results["after"]
    n = min(len(before["losses"]), len(after["losses"]))
    diff = max(abs(a - b) for a, b in zip(before["losses"][:n], after["losses"][:n], strict=True))
    mean = {k: sum(v["utt_per_s"]) / 2 for k, v in results.items()}
    print(f"| tree | job utt/s (2 jobs, 1 thread each) | wall s ({steps} steps x 128, start-up included) |")
    print("|---|---|---|")
    for name, label in (("before", f"before ({baseline})"), ("after", "after (this tree)")):
        r = results[name]
        rates = " / ".join(f"{x:.1f}" for x in r["utt_per_s"])
        print(f"| {label} | {rates} (mean {mean[name]:.1f}) | {r['wall_s']} |")
    print(
        f"speed-up {mean['after'] / mean['before']:.2f}x; "
        f"per-step losses over {n} steps: max |diff| = {diff:.3g}"
    )
    return diff > 0


if __name__ == "__main__":
    main()
