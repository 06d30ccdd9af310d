"""Evaluate training runs on a built-in corpus's trial lists and print one table row per run.

    python benchmarks/eval_runs.py --corpus data/default runs/a runs/b ...

Each run's ``latest.pt`` embeds every test utterance once; each trial list is scored with cosine. The mean
pseudo-positive speaker accuracy and coverage over the run's SSPS epochs come from its ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ssps.checkpoint import load_embedder
from ssps.data.manifest import read_manifest
from ssps.data.trials import read_trials
from ssps.eval import metrics
from ssps.eval.embed import Embeddings, embed_files
from ssps.eval.score import score_trials

LISTS = ("cross_session", "cross_session_no_siblings", "same_session")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--corpus", type=Path, default=Path("data/default"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    test = read_manifest(args.corpus / "test.tsv")
    ids = [r.utterance for r in test.rows]
    paths = [test.resolve(i) for i in range(len(test))]
    trials = {
        k: read_trials(args.corpus / "trials" / f"{k}.txt")
        for k in LISTS
        if (args.corpus / "trials" / f"{k}.txt").is_file()
    }
    rows = []
    print("| run | steps | " + " | ".join(f"EER {k}" for k in trials) + " | speaker acc. | coverage |")
    print("|---|---|" + "---|" * len(trials) + "---|---|")
    for run in args.runs:
        embedder, _ = load_embedder(run / "latest.pt")
        _, emb = embed_files(embedder, paths, ids, progress=False)
        table = Embeddings(ids, emb)
        row = {"run": str(run)}
        for key, tr in trials.items():
            row[key] = metrics.eer(score_trials(table, tr), tr.labels)
        epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        epochs = [e for e in epochs if e["kind"] == "epoch"]
        on = [e for e in epochs if e.get("phase") == "on" and "speaker_accuracy" in e]
        row["steps"] = epochs[-1]["step"]
        row["speaker_accuracy"] = sum(e["speaker_accuracy"] for e in on) / len(on) if on else None
        row["coverage"] = sum(e["coverage"] for e in on) / len(on) if on else None
        rows.append(row)
        acc = "–" if row["speaker_accuracy"] is None else f"{100 * row['speaker_accuracy']:.1f} %"
        cov = "–" if row["coverage"] is None else f"{100 * row['coverage']:.1f} %"
        eers = " | ".join(f"{100 * row[k]:.2f} %" for k in trials)
        print(f"| {run} | {row['steps']} | {eers} | {acc} | {cov} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
