"""Evaluate the demo's models on the dev and the test lists, and gather the figures over seeds.

Every model embeds each utterance of ``dev.tsv`` and ``test.tsv`` once and scores every trial list of its
split. Dev figures are where settings were chosen; test figures are the ones reported. A method's entry
holds the mean and the seed spread per list, and each seed's own figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ssps.corpus.lists import trial_lists
from ssps.data.manifest import read_manifest
from ssps.data.trials import read_trials
from ssps.demo.analysis import similarity_analysis
from ssps.demo.seeds import compare, gap_closed, summarise
from ssps.eval.embed import Embeddings, embed_files, save_embeddings
from ssps.eval.suite import brief, score_list

# Short list keys in results.json; the test cross-session list is the headline.
LIST_KEYS = {
    "cross_session": "cross_session",
    "same_session": "same_session",
    "no_siblings": "cross_session_no_siblings",
}
METRICS = ("eer", "min_dcf_0.01", "min_dcf_0.05")
# A method scored after the label-free augmentation-WCCN back-end (ssps/eval/backend.py) is reported as
# its own method, NAME + BACKEND, and compared with its family's baseline scored the same way.
BACKEND = "+wccn"


def _epoch_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "epoch"]


class Split:
    """One manifest of the corpus and its trial lists (read once for all models)."""

    def __init__(self, corpus: Path, name: str):
        self.name = name
        self.manifest = read_manifest(corpus / f"{name}.tsv")
        self.ids = [r.utterance for r in self.manifest.rows]
        self.paths = [self.manifest.resolve(i) for i in range(len(self.manifest))]
        files = trial_lists(corpus, name)
        self.trials = {key: read_trials(files[f]) for key, f in LIST_KEYS.items() if f in files}

    def evaluate(self, embedder) -> tuple[np.ndarray, dict[str, dict]]:
        _, emb = embed_files(embedder, self.paths, self.ids, progress=False)
        return emb, self.score(emb)

    def score(self, emb: np.ndarray) -> dict[str, dict]:
        table = Embeddings(self.ids, emb)
        return {key: score_list(table, tr) for key, tr in self.trials.items()}


def _with_backend(entry: dict, emb_by_split: dict, splits: list, backend, test, speakers, sessions) -> dict:
    """``entry`` again with every split scored after ``backend`` (the similarity analysis on test too)."""
    out = {k: v for k, v in entry.items() if k not in ("test", "dev", "similarity")}
    for split in splits:
        y = backend.apply(emb_by_split[split.name])
        out[split.name] = {key: brief(r) for key, r in split.score(y).items()}
        if split is test:
            out["similarity"] = similarity_analysis(y, speakers, sessions)
    return out


def evaluate_models(
    models: dict[str, Path], corpus: Path, out: Path, backend: bool = False
) -> tuple[dict, dict]:
    """{job: {"test": {list: metrics}, "dev": ..., "similarity", "steps", "ssps_epochs"}} and the test
    scores per list and job (for the DET curves). ``random_init`` is an untrained copy of the first model.
    With ``backend``, every trained model also gets ``method+wccn/seed``: its figures after the label-free
    augmentation-WCCN back-end fitted on ``train.tsv``'s audio with the model's own augmentation."""
    from ssps.checkpoint import load_embedder
    from ssps.embedder import Embedder
    from ssps.eval.backend import backend_for

    splits = [Split(corpus, "test")] + ([Split(corpus, "dev")] if (corpus / "dev.tsv").is_file() else [])
    test = splits[0]
    speakers = np.array(test.manifest.labels("speaker")[1])
    sessions = np.array(test.manifest.labels("session")[1])
    entries: dict[str, dict] = {}
    test_scores: dict[str, dict] = {}
    for name in ["random_init", *models]:
        if name == "random_init":
            _, cfg = load_embedder(next(iter(models.values())))
            torch.manual_seed(0)
            embedder = Embedder(cfg).eval()
        else:
            embedder, model_cfg = load_embedder(models[name])
        entry: dict = {}
        emb_by_split = {}
        for split in splits:
            emb, results = split.evaluate(embedder)
            emb_by_split[split.name] = emb
            entry[split.name] = {key: brief(r) for key, r in results.items()}
            if split is test:
                save_embeddings(out / "embeddings" / f"{name}.npz", split.ids, emb, {"model": name})
                entry["similarity"] = similarity_analysis(emb, speakers, sessions)
                for key, r in results.items():
                    test_scores.setdefault(key, {})[name] = (r["scores"], r["labels"])
        if name != "random_init":
            epochs = _epoch_records(Path(models[name]).parent)
            entry["steps"] = epochs[-1]["step"] if epochs else 0
            entry["ssps_epochs"] = [r for r in epochs if r.get("phase") == "on"]
        entries[name] = entry
        if backend and name != "random_init":
            fitted = backend_for(models[name], embedder, model_cfg, corpus / "train.tsv", progress=False)
            method, seed = name.split("/")
            entries[f"{method}{BACKEND}/{seed}"] = _with_backend(
                entry, emb_by_split, splits, fitted, test, speakers, sessions
            )
    np.savez(out / "embeddings" / "_labels.npz", speakers=speakers, sessions=sessions)
    return entries, test_scores


def aggregate(per_seed: dict[int, dict]) -> dict:
    """A method's entry from its seeds' entries: per split and list, mean ± std of each metric.

    The test cross-session figures also sit at the top level (``eer``, ``min_dcf``, ...), as before seeds.
    """
    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]
    out: dict = {"seeds": seeds}
    for split in ("test", "dev"):
        if split not in first:
            continue
        out[split] = {}
        for key, m in first[split].items():
            stats = {
                metric: summarise([per_seed[s][split][key][metric] for s in seeds]) for metric in METRICS
            }
            out[split][key] = {
                "eer": stats["eer"]["mean"],
                "eer_std": stats["eer"]["std"],
                "min_dcf": stats["min_dcf_0.01"]["mean"],
                "min_dcf_0.05": stats["min_dcf_0.05"]["mean"],
                "stats": stats,
                "n_target": m["n_target"],
                "n_nontarget": m["n_nontarget"],
                "trials_sha256": m["trials_sha256"],
            }
    head = out["test"]["cross_session"]
    out.update(
        {k: head[k] for k in ("eer", "eer_std", "min_dcf", "n_target", "n_nontarget", "trials_sha256")}
    )
    for key in ("same_session", "no_siblings"):
        if key in out["test"]:
            out[key] = {"eer": out["test"][key]["eer"], "eer_std": out["test"][key]["eer_std"]}
    sims = [per_seed[s]["similarity"] for s in seeds]
    out["similarity"] = {k: float(np.mean([d[k] for d in sims])) for k in sims[0]}
    out["steps"] = first.get("steps", 0)
    out["ssps_epochs"] = first.get("ssps_epochs", [])
    last = [per_seed[s]["ssps_epochs"][-1] for s in seeds if per_seed[s].get("ssps_epochs")]
    for k in ("speaker_accuracy", "same_session_rate", "coverage"):
        if last and all(k in r for r in last):
            out[f"pseudo_positive_{k}"] = summarise([r[k] for r in last])
    out["per_seed"] = {str(s): {split: per_seed[s].get(split) for split in ("test", "dev")} for s in seeds}
    return out


QUALITY_KEYS = ("num_pseudo_speakers", "nmi", "purity", "pairwise_precision", "pairwise_recall")


def _quality(entry: dict) -> dict:
    return {"num_pseudo_speakers": entry["num_pseudo_speakers"], **entry.get("quality", {})}


def add_cluster_quality(methods: dict, round_methods: list[str], chains: dict[int, dict]) -> None:
    """Give each round's method the quality of the pseudo-labels it was trained on (``trained_on``) and of
    those it gives (``gives``: the next round's, or the final labelling), mean ± std over seeds.

    ``chains``: seed -> that seed's ``chain.json``. The quality reads the true speakers: a diagnostic.
    """
    for r, name in enumerate(round_methods):
        if name not in methods:
            continue
        sides: dict[str, list[dict]] = {"trained_on": [], "gives": []}
        for chain in chains.values():
            rounds = chain["rounds"]
            sides["trained_on"].append(_quality(rounds[r]))
            nxt = rounds[r + 1] if r + 1 < len(rounds) else chain.get("final")
            if nxt is not None:
                sides["gives"].append(_quality(nxt))
        methods[name]["pseudo_labels"] = {
            side: {k: summarise([float(q[k]) for q in qs]) for k in QUALITY_KEYS if all(k in q for q in qs)}
            for side, qs in sides.items()
            if qs
        }
        methods[name]["pseudo_labels"]["round"] = r + 1


def comparisons(methods: dict, baselines: dict[str, str], upper: dict[str, str]) -> None:
    """Add to each method, per split, its difference with its family's baseline (against 2 x the baseline's
    seed spread) and, where an upper bound ran, the share of the baseline-to-upper gap it closes: the
    oracle's (``gap_closed``) and supervised training's with the true labels (``gap_closed_supervised``)."""
    for name, m in methods.items():
        base = baselines.get(name)
        if base is None or base == name or base not in methods:
            continue
        for split in ("test", "dev"):
            if split not in m or split not in methods[base]:
                continue
            mine = m[split]["cross_session"]["stats"]["eer"]
            ref = methods[base][split]["cross_session"]["stats"]["eer"]
            c = compare(mine, ref)
            top = upper.get(name)
            if top in methods and top != name and split in methods[top]:
                c["gap_closed"] = gap_closed(
                    mine["mean"], ref["mean"], methods[top][split]["cross_session"]["stats"]["eer"]["mean"]
                )
            sup_name = "supervised" + backend_suffix(name)
            if sup_name in methods and split in methods[sup_name]:
                sup = methods[sup_name][split]["cross_session"]["stats"]["eer"]["mean"]
                c["gap_closed_supervised"] = gap_closed(mine["mean"], ref["mean"], sup)
            m[split]["vs_" + base] = c


def family_of(name: str) -> str:
    """The baseline a method is compared with: its family's, scored the same way (``simclr_ssps+wccn`` ->
    ``simclr+wccn``)."""
    return name.removesuffix(BACKEND).split("_")[0] + backend_suffix(name)


def backend_suffix(name: str) -> str:
    """``BACKEND`` when ``name`` is a method scored after the back-end, else ``""``."""
    return BACKEND if name.endswith(BACKEND) else ""


def evaluate_runs(
    checkpoints: dict[str, dict[int, Path]], corpus: Path, out: Path, backend: bool = False
) -> tuple[dict, dict]:
    """``checkpoints``: method -> {seed: checkpoint} (bases have the single seed 0); ``backend``: also each
    method scored after the label-free back-end, as ``method+wccn``.

    Returns the methods' aggregated entries (plus ``random_init``) and the seed-0 test scores per list
    and method, for the DET curves.
    """
    flat = {f"{name}/{seed}": path for name, seeds in checkpoints.items() for seed, path in seeds.items()}
    entries, scores = evaluate_models(flat, corpus, out, backend)
    methods = {"random_init": aggregate({0: entries["random_init"]})}
    for suffix in ("", BACKEND) if backend else ("",):
        for name, seeds in checkpoints.items():
            methods[name + suffix] = aggregate({seed: entries[f"{name}{suffix}/{seed}"] for seed in seeds})
    baselines = {
        n: family_of(n)
        for n in methods
        if n.removesuffix(BACKEND) not in ("random_init", "supervised")
        and not n.removesuffix(BACKEND).endswith("_base")
    }
    upper = {n: family_of(n).removesuffix(BACKEND) + "_oracle" + backend_suffix(n) for n in baselines}
    comparisons(methods, baselines, upper)
    seed0 = {
        key: {n.split("/")[0]: v for n, v in by_job.items() if n.endswith("/0") or n == "random_init"}
        for key, by_job in scores.items()
    }
    return methods, seed0
