"""``ssps demo [--quick] [--out DIR]``: what ``make demo`` runs."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ssps.demo.pipeline import Job, ensure_corpus, run_jobs
from ssps.train.log import setup_logging
from ssps.utils.files import atomic_write_text

# The experiment configs live in the repository (the demo runs from a checkout).
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class Budget:
    """Training lengths, chosen by measurement (README, "Results"): epochs of ``steps`` steps."""

    steps: int = 25
    base_epochs: int = 16
    cont_epochs: int = 8
    batch_size: int = 0  # 0 = the config's


# SSPS needs a base good enough for its pseudo-positives to be mostly right; the base-length sweep behind
# this choice is in the README ("Results").
FULL = Budget()
# Quick: 8 minutes from a fresh clone, corpus synthesis included (6 x 25-step epochs measured 8 min 13 s).
QUICK = Budget(steps=20, base_epochs=6, cont_epochs=3)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job end to end on the built-in corpus, with a report")
    p.add_argument("--quick", action="store_true", help="SimCLR only, shorter training (about 8 minutes)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--corpus", default="data/default", help="built-in corpus folder (made when missing)")
    p.add_argument("--preset", default="default", help="corpus preset when it must be made")
    p.add_argument(
        "--workers", type=int, default=2, help="parallel processes (default 2 = this machine's cores)"
    )
    p.add_argument("--steps", type=int, help=f"steps per epoch (default {FULL.steps}; --quick {QUICK.steps})")
    p.add_argument("--base-epochs", type=int, help="epochs of base training (default 16; --quick 6)")
    p.add_argument("--cont-epochs", type=int, help="epochs of each continuation (default 8; --quick 3)")
    p.add_argument("--batch-size", type=int, help="global batch size (default: the configs')")
    p.set_defaults(func=run_demo)


def plan(corpus: Path, quick: bool, budget: Budget) -> list[Job]:
    """Base SimCLR (and DINO), then continuations from the same base checkpoint, the same steps and seeds."""
    data = [
        f"data.train_manifest={corpus / 'train.tsv'}",
        f"data.val_trials={corpus / 'trials' / 'cross_session.txt'}",
        f"data.val_root={corpus / 'wav'}",
        f"train.steps_per_epoch={budget.steps}",
        "train.validate_every=1000",
    ]
    if budget.batch_size:
        data.append(f"train.batch_size={budget.batch_size}")
    base, cont = budget.base_epochs, budget.cont_epochs
    total, ssps_on = f"train.epochs={base + cont}", f"ssps.start_epoch={base + 1}"
    jobs = [
        Job(
            "simclr_base",
            str(CONFIGS / "simclr.yaml"),
            (*data, f"train.epochs={base}"),
            threads=2 if quick else 1,
        )
    ]
    for name, config, extra in [
        ("simclr", str(CONFIGS / "simclr.yaml"), ()),
        ("simclr_ssps", str(CONFIGS / "simclr_ssps.yaml"), (ssps_on,)),
        ("simclr_oracle", str(CONFIGS / "simclr_ssps.yaml"), (ssps_on, "ssps.sampling=oracle")),
    ]:
        jobs.append(
            Job(name, config, (*data, total, "train.init={simclr_base}", *extra), after=("simclr_base",))
        )
    if not quick:
        jobs.append(Job("dino_base", str(CONFIGS / "dino.yaml"), (*data, f"train.epochs={base}")))
        for name, config, extra in [
            ("dino", str(CONFIGS / "dino.yaml"), ()),
            ("dino_ssps", str(CONFIGS / "dino_ssps.yaml"), (ssps_on,)),
        ]:
            jobs.append(
                Job(name, config, (*data, total, "train.init={dino_base}", *extra), after=("dino_base",))
            )
    return jobs


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def run_demo(args: argparse.Namespace) -> int:
    from ssps.demo.report import evaluate_runs, write_report

    t0 = time.perf_counter()
    out, corpus = Path(args.out), Path(args.corpus)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(out)
    budget: dict = {"corpus_seconds": round(ensure_corpus(corpus, args.preset, args.workers), 1)}
    t1 = time.perf_counter()
    default = QUICK if args.quick else FULL
    budget_cfg = Budget(
        steps=args.steps or default.steps,
        base_epochs=args.base_epochs or default.base_epochs,
        cont_epochs=args.cont_epochs or default.cont_epochs,
        batch_size=args.batch_size or 0,
    )
    results = run_jobs(plan(corpus, args.quick, budget_cfg), out, slots=args.workers)
    budget["training_seconds"] = round(time.perf_counter() - t1, 1)
    budget["plan"] = asdict(budget_cfg)
    budget["jobs"] = {name: round(r.seconds, 1) for name, r in results.items()}
    t2 = time.perf_counter()
    methods = evaluate_runs(results, corpus, out)
    budget["evaluation_seconds"] = round(time.perf_counter() - t2, 1)
    budget["total_seconds"] = round(time.perf_counter() - t0, 1)
    summary = {
        "corpus": json.loads((corpus / "corpus.json").read_text()),
        "methods": methods,
        "budget": budget,
        "commit": _commit(),
        "command": f"ssps demo{' --quick' if args.quick else ''} --out {args.out} --corpus {args.corpus}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    table = write_report(summary, results, corpus, out)
    print(table)
    print(
        f"\nreport: {out / 'report.md'}  results: {out / 'results.json'}  ({budget['total_seconds']:.0f} s)"
    )
    return 0
