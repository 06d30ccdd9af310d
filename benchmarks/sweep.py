"""Run one sweep of continuations from a common base, over seeds, and evaluate it on a corpus split.

    python benchmarks/sweep.py benchmarks/sweeps/NAME.yaml [--out runs/sweeps/NAME] [--only a,b]
        [--seeds 0,1,2] [--split dev] [--workers 2]

A sweep file names a built-in corpus, a base training (a config, or an existing checkpoint) and variants;
each variant continues the base for the same number of steps, once per seed, as independent single-thread
processes (two at a time on two cores). Every run is evaluated on the split's trial lists (dev unless
``--split test``: settings are chosen on dev, test is read only for reported figures); the table gives,
per variant, mean ± std over seeds of EER and minDCF(p_target 0.01) per list, the SSPS diagnostics
averaged over its SSPS epochs, and the difference to the reference variant against the reference's seed
spread. Everything lands in ``OUT/summary.json``; finished runs and evaluations are reused.

Sweep file::

    corpus: /work/corpora/sessions16      # made by `ssps data synth`
    steps: 25                             # steps per epoch
    base: {config: configs/simclr.yaml, epochs: 16, overrides: []}   # or {checkpoint: PATH, epochs: 16}
    continuation_epochs: 8
    seeds: [0, 1, 2]
    reference: simclr                     # the variant differences are measured against
    variants:
      simclr: {config: configs/simclr.yaml}
      ssps_knn: {config: configs/simclr_ssps_session_meta.yaml, overrides: [ssps.session_pooling=false]}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from ssps.checkpoint import load_embedder
from ssps.corpus.lists import trial_lists
from ssps.demo.pipeline import Job, run_jobs
from ssps.demo.seeds import compare, pm, summarise
from ssps.eval.suite import brief, evaluate_lists
from ssps.utils.files import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DIAGNOSTICS = ("coverage", "speaker_accuracy", "same_session_rate", "nmi_speaker")


def plan(sweep: dict, corpus: Path, seeds: list[int], only: set[str] | None) -> list[Job]:
    steps, base = sweep["steps"], sweep["base"]
    base_epochs, total = base["epochs"], base["epochs"] + sweep["continuation_epochs"]
    dev = trial_lists(corpus, "dev")
    common = [
        f"data.train_manifest={corpus / 'train.tsv'}",
        f"data.val_trials={dev.get('cross_session', '')}",
        f"data.val_root={corpus / 'wav'}",
        f"train.steps_per_epoch={steps}",
        "train.validate_every=1000",
        *sweep.get("overrides", []),
    ]
    jobs, after, init = [], (), base.get("checkpoint")
    if init is None:
        cfg = str(REPO / base["config"])
        jobs.append(Job("base", cfg, (*common, f"train.epochs={base_epochs}", *base.get("overrides", []))))
        after, init = ("base",), "{base}"
    for name, v in sweep["variants"].items():
        if only and name not in only:
            continue
        for seed in seeds:
            overrides = (
                *common,
                f"train.epochs={total}",
                f"ssps.start_epoch={base_epochs + 1}",
                f"train.init={init}",
                f"train.seed={seed}",
                *v.get("overrides", []),
            )
            jobs.append(Job(f"{name}_s{seed}", str(REPO / v["config"]), overrides, after=after))
    return jobs


def ssps_figures(run_dir: Path) -> dict:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    on = [r for r in records if r["kind"] == "epoch" and r.get("phase") == "on"]
    return {k: sum(r[k] for r in on) / len(on) for k in DIAGNOSTICS if on and all(k in r for r in on)}


def evaluate_run(run_dir: Path, corpus: Path, split: str) -> dict:
    """The run's metrics on the split (cached beside it as eval_<split>.json, keyed by the checkpoint)."""
    ckpt = run_dir / "latest.pt"
    cache = run_dir / f"eval_{split}.json"
    stamp = ckpt.stat().st_mtime_ns
    if cache.is_file() and json.loads(cache.read_text()).get("checkpoint_mtime_ns") == stamp:
        return json.loads(cache.read_text())
    embedder, _ = load_embedder(ckpt)
    lists = trial_lists(corpus, split)
    results = evaluate_lists(embedder, corpus / f"{split}.tsv", lists)
    out = {
        "checkpoint_mtime_ns": stamp,
        "lists": {k: brief(v) for k, v in results.items()},
        "ssps": ssps_figures(run_dir),
    }
    atomic_write_text(cache, json.dumps(out, indent=2) + "\n")
    return out


def aggregate(evals: dict[str, list[dict]], reference: str | None) -> dict:
    table = {}
    for name, runs in evals.items():
        row = {}
        for key in runs[0]["lists"]:
            row[key] = {m: summarise([r["lists"][key][m] for r in runs]) for m in ("eer", "min_dcf_0.01")}
        for key in DIAGNOSTICS:
            if all(key in r["ssps"] for r in runs):
                row[key] = summarise([r["ssps"][key] for r in runs])
        table[name] = row
    if reference in table:
        for name, row in table.items():
            for key in evals[name][0]["lists"]:
                row[key]["vs_reference"] = compare(row[key]["eer"], table[reference][key]["eer"])
    return table


def print_table(table: dict, reference: str | None, split: str) -> None:
    order = ["cross_session", "cross_session_no_siblings", "same_session"]
    lists = [k for k in order if k in next(iter(table.values()))]
    head = " | ".join(f"{split} {k} EER %" for k in lists)
    print(
        f"| variant | seeds | {head} | minDCF(0.01) cross | Δ cross vs {reference} (x ref std) "
        "| spk acc % | same-sess % |"
    )
    print("|---|---|" + "---|" * len(lists) + "---|---|---|---|")
    for name, row in table.items():
        eers = " | ".join(pm(row[k]["eer"]) for k in lists)
        dcf = pm(row["cross_session"]["min_dcf_0.01"], scale=1, digits=3)
        vs = row["cross_session"].get("vs_reference")
        d = (
            "–"
            if not vs or name == reference
            else (
                f"{100 * vs['delta']:+.2f} ({vs['in_stds']:+.1f})"
                if vs["in_stds"] is not None
                else f"{100 * vs['delta']:+.2f}"
            )
        )
        acc = pm(row["speaker_accuracy"], digits=1) if "speaker_accuracy" in row else "–"
        same = pm(row["same_session_rate"], digits=1) if "same_session_rate" in row else "–"
        n = row["cross_session"]["eer"]["n"]
        print(f"| {name} | {n} | {eers} | {dcf} | {d} | {acc} | {same} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sweep", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--corpus", type=Path, help="override the sweep file's corpus")
    p.add_argument("--only", default="", help="comma-separated variants (default: all)")
    p.add_argument("--seeds", default="", help="comma-separated seeds (default: the sweep file's)")
    p.add_argument("--split", default="dev", choices=["dev", "test"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--strict",
        action="store_true",
        help="retrain finished runs made by another config or code version (default: keep them; each "
        "run's job.json records its config and code version)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    sweep = yaml.safe_load(args.sweep.read_text())
    corpus = args.corpus or Path(sweep["corpus"])
    out = args.out or Path("runs/sweeps") / args.sweep.stem
    seeds = [int(s) for s in args.seeds.split(",") if s] or sweep.get("seeds", [0])
    only = {s for s in args.only.split(",") if s} or None
    out.mkdir(parents=True, exist_ok=True)
    done = run_jobs(
        plan(sweep, corpus, seeds, only), out, slots=args.workers, reuse_any_finished=not args.strict
    )
    evals: dict[str, list[dict]] = {}
    for name in sweep["variants"]:
        runs = [done[f"{name}_s{s}"] for s in seeds if f"{name}_s{s}" in done]
        if runs:
            evals[name] = [evaluate_run(r.checkpoint.parent, corpus, args.split) for r in runs]
    reference = sweep.get("reference")
    table = aggregate(evals, reference)
    summary = {
        "sweep": str(args.sweep),
        "corpus": str(corpus),
        "split": args.split,
        "seeds": seeds,
        "table": table,
    }
    atomic_write_text(out / f"summary_{args.split}.json", json.dumps(summary, indent=2) + "\n")
    print(f"\n{args.sweep} on {corpus} ({args.split} lists), seeds {seeds}")
    print_table(table, reference, args.split)


if __name__ == "__main__":
    main()
