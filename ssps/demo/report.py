"""Evaluate the demo's runs and write ``report.md`` with its pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ssps.data.manifest import read_manifest
from ssps.data.trials import read_trials
from ssps.demo.analysis import project_2d, similarity_analysis
from ssps.eval.commands import compute_metrics
from ssps.eval.embed import Embeddings, embed_files, save_embeddings
from ssps.eval.report import plot_det_curves
from ssps.eval.score import score_trials
from ssps.utils.files import atomic_path, atomic_write_text

TRIAL_LISTS = {
    "cross_session": "cross_session.txt",
    "same_session": "same_session.txt",
    "no_siblings": "cross_session_no_siblings.txt",
}
LABELS = {
    "random_init": "random init",
    "simclr_base": "SimCLR (base)",
    "simclr": "SimCLR",
    "simclr_ssps": "SimCLR + SSPS",
    "simclr_oracle": "SimCLR + oracle positives (uses labels)",
    "dino_base": "DINO (base)",
    "dino": "DINO",
    "dino_ssps": "DINO + SSPS",
}


def _epoch_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "epoch"]


def evaluate_runs(results: dict, corpus: Path, out: Path) -> dict:
    """Embed every test utterance once per model, score each trial list, and analyse the embeddings."""
    from ssps.checkpoint import load_embedder
    from ssps.embedder import Embedder

    test = read_manifest(corpus / "test.tsv")
    ids = [r.utterance for r in test.rows]
    paths = [test.resolve(i) for i in range(len(test))]
    speakers = np.array(test.labels("speaker")[1])
    sessions = np.array(test.labels("session")[1])
    trials = {
        k: read_trials(corpus / "trials" / f)
        for k, f in TRIAL_LISTS.items()
        if (corpus / "trials" / f).is_file()
    }
    models = {name: result.checkpoint for name, result in results.items()}
    methods: dict[str, dict] = {}
    scores_cache: dict[str, dict] = {}
    for name in ["random_init", *models]:
        if name == "random_init":
            _, base_cfg = load_embedder(models["simclr_base"])
            torch.manual_seed(0)
            embedder = Embedder(base_cfg).eval()
        else:
            embedder, _ = load_embedder(models[name])
        _, emb = embed_files(embedder, paths, ids, progress=False)
        save_embeddings(out / "embeddings" / f"{name}.npz", ids, emb, {"model": name})
        table = Embeddings(ids, emb)
        entry: dict = {"label": LABELS.get(name, name)}
        for key, tr in trials.items():
            scores = score_trials(table, tr)
            m = compute_metrics(scores, tr.labels, tr.sha256)
            scores_cache.setdefault(key, {})[name] = (scores, tr.labels)
            brief = {
                "eer": m["eer"],
                "min_dcf": m["min_dcf_0.01"],
                "min_dcf_0.05": m["min_dcf_0.05"],
                "n_target": m["n_target"],
                "n_nontarget": m["n_nontarget"],
                "trials_sha256": m["trials_sha256"],
            }
            if key == "cross_session":
                entry.update(brief)
            else:
                entry[key] = brief
        entry["similarity"] = similarity_analysis(emb, speakers, sessions)
        if name != "random_init":
            epochs = _epoch_records(Path(models[name]).parent)
            entry["steps"] = epochs[-1]["step"] if epochs else 0
            entry["ssps_epochs"] = [r for r in epochs if r.get("phase") == "on"]
        methods[name] = entry
    np.savez(out / "embeddings" / "_labels.npz", speakers=speakers, sessions=sessions)
    _plot_dets(scores_cache, out)
    return methods


def _plot_dets(scores_cache: dict, out: Path) -> None:
    for key, systems in scores_cache.items():
        shown = {LABELS.get(n, n): v for n, v in systems.items() if not n.endswith("_base")}
        plot_det_curves(shown, out / f"det_{key}.png", title=f"{key.replace('_', '-')} trials")


def _plot_diagnostics(methods: dict, path: Path) -> bool:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = {n: m["ssps_epochs"] for n, m in methods.items() if m.get("ssps_epochs") and n.endswith("_ssps")}
    if not runs:
        return False
    keys = [
        ("coverage", "coverage"),
        ("speaker_accuracy", "pseudo-positive speaker accuracy"),
        ("same_session_rate", "same-session rate"),
        ("nmi_speaker", "NMI clusters vs speaker"),
    ]
    # Only what was logged: knn sampling makes no clusters, so it has no NMI.
    keys = [(k, t) for k, t in keys if any(k in r for records in runs.values() for r in records)]
    fig = Figure(figsize=(2.6 * len(keys), 2.8))
    FigureCanvasAgg(fig)
    for i, (key, title) in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for name, records in runs.items():
            xs = [r["epoch"] for r in records if key in r]
            ax.plot(xs, [r[key] for r in records if key in r], "o-", label=LABELS.get(name, name))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.4)
    fig.axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    return True


def _plot_projection(out: Path, names: list[str], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = np.load(out / "embeddings" / "_labels.npz")
    speakers, sessions = labels["speakers"], labels["sessions"]
    session_rank = np.zeros_like(sessions)
    for s in np.unique(speakers):  # the k-th session of each speaker gets marker k
        mask = speakers == s
        _, session_rank[mask] = np.unique(sessions[mask], return_inverse=True)
    markers = "os^Dv<>p"
    fig = Figure(figsize=(5 * len(names), 5))
    FigureCanvasAgg(fig)
    import matplotlib

    # 40 distinct colours (tab20 then tab20b) so that up to 40 test speakers never share one.
    palette = [*matplotlib.colormaps["tab20"].colors, *matplotlib.colormaps["tab20b"].colors]
    for i, name in enumerate(names):
        emb = np.load(out / "embeddings" / f"{name}.npz")["embeddings"]
        xy = project_2d(emb)
        ax = fig.add_subplot(1, len(names), i + 1)
        for k in range(session_rank.max() + 1):
            m = session_rank == k
            ax.scatter(
                xy[m, 0],
                xy[m, 1],
                c=[palette[s % len(palette)] for s in speakers[m]],
                marker=markers[k % len(markers)],
                s=14,
                alpha=0.8,
                linewidths=0,
            )
        ax.set_title(f"{LABELS.get(name, name)}: colour = speaker, marker = session", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def write_report(summary: dict, results: dict, corpus: Path, out: Path) -> str:
    """Write ``report.md`` and its figures; returns the results table (markdown) for the terminal."""
    # A fixed order (LABELS), whatever order the trainings finished in.
    methods = dict(sorted(summary["methods"].items(), key=lambda kv: list(LABELS).index(kv[0])))
    rows = [
        "| method | cross-session EER | minDCF (p=0.01) | same-session EER | cross-session, no siblings |",
        "|---|---|---|---|---|",
    ]
    for m in methods.values():
        rows.append(
            f"| {m['label']} | {_pct(m['eer'])} | {m['min_dcf']:.3f} | "
            f"{_pct(m.get('same_session', {}).get('eer'))} | {_pct(m.get('no_siblings', {}).get('eer'))} |"
        )
    table = "\n".join(rows)
    lines = [
        "# ssps demo report\n",
        f"{summary['date']} · commit `{summary['commit']}` · `{summary['command']}`\n",
    ]
    c = summary["corpus"]
    counts = ", ".join(
        f"{c[k]} {k.replace('_', ' ')}"
        for k in ("speakers", "train_speakers", "test_speakers", "sessions", "utterances")
        if k in c
    )
    hours = f", {c['hours']:.2f} h" if "hours" in c else ""
    lines.append(f"Corpus: `{corpus}` — {counts}{hours}\n")
    lines.append("## Results (test speakers never seen in training)\n")
    lines.append(table + "\n")
    gains = []
    for family in ("simclr", "dino"):
        base, ssps, oracle = (
            methods.get(family),
            methods.get(f"{family}_ssps"),
            methods.get(f"{family}_oracle"),
        )
        if base and ssps:
            rel = (base["eer"] - ssps["eer"]) / base["eer"]
            text = f"- {LABELS[family]}: SSPS changes the cross-session EER by {-100 * rel:+.1f} % relative"
            if oracle and oracle["eer"] < base["eer"]:
                closed = (base["eer"] - ssps["eer"]) / (base["eer"] - oracle["eer"])
                text += f"; it closes {100 * closed:.0f} % of the baseline-to-oracle gap"
            gains.append(text + ".")
    lines += gains + [""]
    lines.append(
        "Baseline and SSPS continue from the same base checkpoint for the same number of steps with the "
        "same seed (the paper's protocol); the oracle draws positives from another session of the same "
        "speaker using the labels: an upper bound, not a method.\n"
    )
    lines.append("## DET curves (cross-session trials)\n\n![DET](det_cross_session.png)\n")
    if _plot_diagnostics(methods, out / "ssps_diagnostics.png"):
        lines.append(
            "## SSPS diagnostics per epoch\n\nCoverage (anchors that got a pseudo-positive), "
            "how often the pseudo-positive is the anchor's speaker, how often it comes from the "
            "anchor's own session, and (k-means sampling) the NMI of the clusters with the speakers.\n\n"
            "![diagnostics](ssps_diagnostics.png)\n"
        )
    pair = [n for n in ("simclr", "simclr_ssps") if n in methods]
    if len(pair) == 2:
        _plot_projection(out, pair, out / "projection.png")
        lines.append("## Test embeddings in 2-D (t-SNE)\n\n![projection](projection.png)\n")
    lines.append("## Variance analysis: mean cosine similarity\n")
    lines.append(
        "Ratio = same speaker in another session / same session: 1 means the embedding ignores the "
        "recording. (A random-init model in eval mode maps everything to one point: all 1.)\n"
    )
    lines.append("| method | same speaker, other session | same session | different speakers | ratio |")
    lines.append("|---|---|---|---|---|")
    for m in methods.values():
        s = m["similarity"]
        lines.append(
            f"| {m['label']} | {s['same_speaker_cross_session']:.3f} | {s['same_session']:.3f} | "
            f"{s['different_speakers']:.3f} | {s['cross_over_within_session']:.3f} |"
        )
    lines.append("\n## Budget\n")
    lines.append("```\n" + json.dumps(summary["budget"], indent=2) + "\n```\n")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return table
