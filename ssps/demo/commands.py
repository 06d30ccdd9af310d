"""``ssps demo [--quick] [--out DIR]``: what ``make demo`` runs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ssps.data.manifest import read_manifest
from ssps.demo.pipeline import Job, chain_rounds, ensure_corpus, run_jobs
from ssps.demo.rows import DEFAULT_ROWS, QUICK_ROWS, ROWS, Row
from ssps.errors import SSPSError
from ssps.train.log import setup_logging
from ssps.utils.files import atomic_write_text

# The experiment configs live in the repository (the demo runs from a checkout).
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class Budget:
    """Training lengths: epochs of ``steps`` steps. The 16 + 8 default predates the dev split; re-checked on
    dev against 8 + 8 (docs/experiments.md, section 8): only 16 + 8 gives an SSPS gain beyond SimCLR's
    seed spread there, so it stays."""

    steps: int = 25
    base_epochs: int = 16
    cont_epochs: int = 8
    batch_size: int = 0  # 0 = the config's
    seeds: int = 1  # each continuation is trained with seeds 0 .. seeds-1 from the same base
    rounds: int = 2  # pseudo-label rows: rounds of (label, train supervised for cont_epochs)


# SSPS needs a base good enough for its pseudo-positives to be mostly right (docs/experiments.md).
FULL = Budget()
# Quick: SimCLR rows only, shorter training (measured 8 min 13 s from a fresh clone, corpus included,
# before the dev split).
QUICK = Budget(steps=20, base_epochs=6, cont_epochs=3)


def chain_pseudo(num_utterances: int) -> tuple[str, ...]:
    """Pseudo-label clustering of the chain rows, chosen on dev (docs/pseudo_labels.md, feasibility): K =
    N / 10 k-means clusters, S by silhouette in 10..120 (K = 150 for the 1,504 training utterances of the
    default corpus); smaller corpora scale the range down. No label is read."""
    k = max(2, num_utterances // 10)
    hi = max(2, min(120, k * 4 // 5))
    return (f"pseudo.clusters={k}", f"pseudo.min_speakers={min(10, hi)}", f"pseudo.max_speakers={hi}")


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
    p.add_argument(
        "--seeds", type=int, default=1, help="train each continuation with seeds 0..N-1; report mean ± std"
    )
    p.add_argument(
        "--rounds", type=int, default=2, help="pseudo-label rows (simclr_ssps_pl): rounds of the chain"
    )
    p.add_argument(
        "--rows",
        help=f"comma-separated methods (default {','.join(DEFAULT_ROWS)}; known: {','.join(ROWS)})",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every training job, bases included (repeatable), e.g. features.n_mels=80",
    )
    p.add_argument(
        "--reuse-finished",
        action="store_true",
        help="keep finished jobs made by other code or configs (job.json records both); default: retrain",
    )
    p.add_argument(
        "--reuse-same-config",
        action="store_true",
        help="keep finished jobs made by the same resolved config, whatever code version made them",
    )
    p.add_argument(
        "--backend",
        action="store_true",
        help="also report every method after the label-free augmentation-WCCN back-end (ssps backend; "
        "about 40 CPU s more per model)",
    )
    p.set_defaults(func=run_demo)


def job_name(row: str, seed: int) -> str:
    return f"{row}_s{seed}"


def families(rows: tuple[str, ...]) -> list[str]:
    """The bases the rows continue, SimCLR first."""
    return sorted({ROWS[r].family for r in rows if ROWS[r].kind != "scratch"}, key=["simclr", "dino"].index)


def round_names(row: str, rounds: int) -> list[str]:
    """The report's methods of a chain row: one per round."""
    return [f"{row}_r{r}" for r in range(1, rounds + 1)]


def _chain_job(name: str, row: Row, seed: int, corpus: Path, data: list[str], budget: Budget) -> Job:
    """``ssps chain`` from the seed's model of ``row.after``: every round trains ``cont_epochs`` epochs."""
    train = [
        *data,
        f"train.epochs={budget.cont_epochs}",
        f"train.seed={seed}",
        "train.threads=1",
        "method.supervised.margin_warmup_epochs=2",
        # The label-free instance term, chosen on dev (docs/experiments.md, section 20).
        "method.supervised.instance_weight=1.0",
    ]
    # A chain override list is one YAML value: [a=b,c=d]. No element may hold a comma.
    overrides = (
        f"init={{{job_name(row.after, seed)}}}",
        f"train_manifest={corpus / 'train.tsv'}",
        f"rounds={budget.rounds}",
        f"overrides=[{','.join(o for o in train if not o.startswith('train.schedule_epochs'))}]",
        f"pseudo.seed={seed}",
        *chain_pseudo(len(read_manifest(corpus / "train.tsv"))),  # the clustering is sized by N
        *row.overrides,
    )
    return Job(
        job_name(name, seed), str(CONFIGS / row.config), overrides, (job_name(row.after, seed),), 1, "chain"
    )


def plan(
    corpus: Path, rows: tuple[str, ...], budget: Budget, quick: bool = False, settings: tuple[str, ...] = ()
) -> list[Job]:
    """One base per family, then every row's continuation from it for each seed, with the same steps.

    Validation during training reads the dev lists only: the test lists are for the reported figures.
    ``settings``: ``key=value`` config overrides for every training job (``--set``), bases included, before
    each row's own overrides (a row's definition wins over them).
    """
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SSPSError(f"--rows: unknown method {unknown[0]!r}; expected some of {', '.join(ROWS)}")
    if budget.seeds < 1:
        raise SSPSError(f"--seeds: expected a positive number of seeds, got {budget.seeds}")
    if budget.rounds < 1:
        raise SSPSError(f"--rounds: expected a positive number of rounds, got {budget.rounds}")
    missing = [(r, ROWS[r].after) for r in rows if ROWS[r].after and ROWS[r].after not in rows]
    if missing:
        raise SSPSError(f"--rows: {missing[0][0]} starts from {missing[0][1]}'s models; add {missing[0][1]}")
    for setting in settings:
        key, eq, _ = setting.partition("=")
        if not eq or not key.strip():
            raise SSPSError(f"--set {setting!r}: expected key=value, e.g. features.n_mels=80")
        if "," in setting and any(ROWS[r].kind == "chain" for r in rows):
            raise SSPSError(f"--set {setting!r}: a chain row passes settings in one list; no comma allowed")
    data = [
        f"data.train_manifest={corpus / 'train.tsv'}",
        f"data.val_trials={corpus / 'trials' / 'dev_cross_session.txt'}",
        f"data.val_root={corpus / 'wav'}",
        f"train.steps_per_epoch={budget.steps}",
        # One schedule over base + continuation: a base is the first part of it (cosine lr, DINO momentum).
        f"train.schedule_epochs={budget.base_epochs + budget.cont_epochs}",
        "train.validate_every=1000",
        *settings,
    ]
    if budget.batch_size:
        data.append(f"train.batch_size={budget.batch_size}")
    base, cont = budget.base_epochs, budget.cont_epochs
    total, ssps_on = f"train.epochs={base + cont}", f"ssps.start_epoch={base + 1}"
    bases = families(rows)
    # A lone base job may use both cores; with two bases each gets one.
    threads = 2 if len(bases) == 1 else 1
    jobs = [
        Job(f"{f}_base", str(CONFIGS / f"{f}.yaml"), (*data, f"train.epochs={base}"), threads=threads)
        for f in bases
    ]
    for seed in range(budget.seeds):
        for name in rows:
            row = ROWS[name]
            if row.kind == "chain":
                jobs.append(_chain_job(name, row, seed, corpus, data, budget))
                continue
            if row.kind == "scratch":
                overrides = (*data, total, f"train.seed={seed}", *row.overrides)
                jobs.append(Job(job_name(name, seed), str(CONFIGS / row.config), overrides))
                continue
            extra = (ssps_on, *row.overrides) if row.ssps else row.overrides
            overrides = (*data, total, f"train.seed={seed}", f"train.init={{{row.family}_base}}", *extra)
            jobs.append(
                Job(job_name(name, seed), str(CONFIGS / row.config), overrides, after=(f"{row.family}_base",))
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
    from ssps.demo.evaluate import add_cluster_quality, evaluate_runs
    from ssps.demo.report import write_report

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
        seeds=args.seeds,
        rounds=args.rounds,
    )
    rows = tuple(args.rows.split(",")) if args.rows else (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    jobs = plan(corpus, rows, budget_cfg, settings=tuple(args.set))
    results = run_jobs(
        jobs,
        out,
        slots=args.workers,
        reuse_any_finished=args.reuse_finished,
        reuse_same_config=args.reuse_same_config,
    )
    budget["training_seconds"] = round(time.perf_counter() - t1, 1)
    budget["plan"] = asdict(budget_cfg)
    budget["jobs"] = {name: round(r.seconds, 1) for name, r in results.items()}
    t2 = time.perf_counter()
    checkpoints = {f"{f}_base": {0: results[f"{f}_base"].checkpoint} for f in families(rows)}
    chains: dict[str, dict[int, dict]] = {}
    for name in rows:
        if ROWS[name].kind == "chain":
            seeds = range(budget_cfg.seeds)
            chains[name] = {s: chain_rounds(results[job_name(name, s)].checkpoint) for s in seeds}
            for r, method in enumerate(round_names(name, budget_cfg.rounds)):
                checkpoints[method] = {s: Path(c["rounds"][r]["model"]) for s, c in chains[name].items()}
            continue
        checkpoints[name] = {s: results[job_name(name, s)].checkpoint for s in range(budget_cfg.seeds)}
    methods, scores = evaluate_runs(checkpoints, corpus, out, backend=args.backend)
    for name, per_seed in chains.items():
        add_cluster_quality(methods, round_names(name, budget_cfg.rounds), per_seed)
    budget["evaluation_seconds"] = round(time.perf_counter() - t2, 1)
    budget["total_seconds"] = round(time.perf_counter() - t0, 1)
    summary = {
        "corpus": json.loads((corpus / "corpus.json").read_text()),
        "methods": methods,
        "budget": budget,
        "commit": _commit(),
        "command": " ".join(["ssps", *sys.argv[1:]]) if sys.argv[1:2] == ["demo"] else "ssps demo",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    table = write_report(summary, scores, corpus, out)
    print(table)
    print(
        f"\nreport: {out / 'report.md'}  results: {out / 'results.json'}  ({budget['total_seconds']:.0f} s)"
    )
    return 0
