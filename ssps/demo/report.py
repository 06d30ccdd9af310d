"""``report.md`` of the demo and its pictures, from the figures of :mod:`ssps.demo.evaluate`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ssps.demo.analysis import project_2d
from ssps.demo.seeds import pm
from ssps.demo.verdict import verdict_lines
from ssps.eval.report import plot_det_curves
from ssps.utils.files import atomic_path, atomic_write_text

# Row names and labels, in the report's order. Labels name what a row reads besides the audio.
LABELS = {
    "random_init": "random init",
    "simclr_base": "SimCLR (base)",
    "simclr": "SimCLR",
    "simclr_ssps": "SimCLR + SSPS (label-free: knn outside own channel cluster, 75 % largest margins)",
    "simclr_ssps_all": "SimCLR + SSPS (label-free: knn outside own channel cluster, every candidate)",
    "simclr_ssps_mutual": "SimCLR + SSPS (label-free: knn mutual neighbours outside own channel cluster)",
    "simclr_ssps_knn1": "SimCLR + SSPS (label-free: nearest neighbour outside own channel cluster)",
    "simclr_ssps_margin": "SimCLR + SSPS (label-free: knn, the half of candidates with the largest margin)",
    "simclr_ssps_paper": "SimCLR + SSPS (label-free: the paper's kmeans-repr)",
    "simclr_ssps_session_meta": "SimCLR + SSPS + session metadata",
    "simclr_oracle": "SimCLR + oracle positives (labels)",
    "simclr_ssps_oracle_filter": "SimCLR + SSPS, wrong-speaker draws dropped (oracle filter: labels)",
    "simclr_ssps_oracle_filter_half": (
        "SimCLR + SSPS, half the wrong-speaker draws dropped (oracle filter: labels)"
    ),
    "dino_base": "DINO (base)",
    "dino": "DINO",
    "dino_ssps": "DINO + SSPS (label-free: knn outside own channel cluster)",
    "dino_ssps_margin": "DINO + SSPS (label-free: knn, the half of candidates with the largest margin)",
    "dino_ssps_margin75": (
        "DINO + SSPS (label-free: knn, the three quarters of candidates with the largest margin)"
    ),
    "dino_ssps_session_meta": "DINO + SSPS + session metadata",
    "simclr_ssps_pl": "SimCLR + SSPS → pseudo-labels (label-free)",
    "supervised": "supervised (labels: upper bound)",
}
ROUND = re.compile(r"^(.+)_r(\d+)$")  # a chain row's round: simclr_ssps_pl_r2


def _round_of(name: str) -> tuple[str, int] | None:
    """(row, r) when ``name`` is round r of a chain row the report knows, else None."""
    m = ROUND.match(name)
    if name in LABELS or m is None or m.group(1) not in LABELS:
        return None
    return m.group(1), int(m.group(2))


def label(name: str) -> str:
    """A method's label in the report (', round r' for a chain round; NAME+wccn: the back-end named)."""
    if name.endswith("+wccn"):
        return label(name.removesuffix("+wccn")) + " + WCCN back-end (label-free)"
    chain = _round_of(name)
    return f"{LABELS[chain[0]]}, round {chain[1]}" if chain else LABELS.get(name, name)


def plot_dets(scores_cache: dict, out: Path) -> None:
    """DET curves of every method (seed 0) per test list, bases left out."""
    for key, systems in scores_cache.items():
        shown = {label(n): v for n, v in systems.items() if not n.endswith("_base")}
        plot_det_curves(shown, out / f"det_{key}.png", title=f"{key.replace('_', '-')} trials")


def _plot_diagnostics(methods: dict, path: Path) -> bool:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = {n: m["ssps_epochs"] for n, m in methods.items() if m.get("ssps_epochs") and "_ssps" in n}
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
            ax.plot(xs, [r[key] for r in records if key in r], "o-", label=label(name))
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
        ax.set_title(f"{label(name.split('/')[0])}: colour = speaker, marker = session", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


def _order(name: str) -> tuple[int, int, int]:
    row, r = _round_of(plain := name.removesuffix("+wccn")) or (plain, 0)
    return int(plain != name), (list(LABELS).index(row) if row in LABELS else len(LABELS)), r


def _cell(entry: dict, split: str, key: str, metric: str = "eer") -> str:
    m = entry.get(split, {}).get(key)
    if m is None:
        return "–"
    return pm(m["stats"][metric], scale=100.0 if metric == "eer" else 1.0, digits=2 if metric == "eer" else 3)


def _delta(entry: dict, split: str) -> str:
    c = next((v for k, v in entry.get(split, {}).items() if k.startswith("vs_")), None)
    if c is None:
        return ""
    text = f"{100 * c['delta']:+.2f}"
    if c["exceeds_spread"] is not None:
        text += " (> 2 std)" if c["exceeds_spread"] else " (within 2 std)"
    if c.get("gap_closed") is not None:
        text += f", {round(100 * c['gap_closed'])} % of gap"  # round(): an int, never "-0"
    if c.get("gap_closed_supervised") is not None:
        text += f", {round(100 * c['gap_closed_supervised'])} % of the gap to supervised"
    return text


def results_table(methods: dict, split: str) -> str:
    """Markdown table of one split: EER (%) and minDCF as mean ± std over seeds, and the change from the
    family's baseline (percentage points) against 2 x the baseline's seed spread."""
    rows = [
        "| method | seeds | cross-session EER % | minDCF (0.01) | same-session EER % | no siblings EER % "
        "| Δ EER vs baseline (pp) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods.values():
        if split not in m:
            continue
        rows.append(
            f"| {m['label']} | {len(m['seeds'])} | {_cell(m, split, 'cross_session')} | "
            f"{_cell(m, split, 'cross_session', 'min_dcf_0.01')} | {_cell(m, split, 'same_session')} | "
            f"{_cell(m, split, 'no_siblings')} | {_delta(m, split)} |"
        )
    return "\n".join(rows)


def _pseudo_positive_table(methods: dict) -> list[str]:
    rows = [n for n, m in methods.items() if "pseudo_positive_speaker_accuracy" in m]
    if not rows:
        return []
    lines = [
        "## Pseudo-positives in the last SSPS epoch\n",
        "Training set, seed mean; the diagnostics read the labels, the label-free samplers do not.\n",
        "| method | speaker accuracy | same-session rate | coverage |",
        "|---|---|---|---|",
    ]
    for n in rows:
        m = methods[n]
        cells = [
            pm(m.get(f"pseudo_positive_{k}", {"mean": float("nan"), "std": 0, "n": 1}), 100.0, 1)
            for k in ("speaker_accuracy", "same_session_rate", "coverage")
        ]
        lines.append(f"| {m['label']} | {' % | '.join(cells)} % |")
    return lines + [""]


def _pseudo_label_table(methods: dict) -> list[str]:
    rows = [n for n, m in methods.items() if "pseudo_labels" in m]
    if not rows:
        return []
    lines = [
        "## Pseudo-labels per round\n",
        "Training set, mean ± std over seeds, against the true speakers (a diagnostic: the clustering "
        "never reads them). 'trained on': the labels of the round's training, made by the previous model; "
        "'gives': the labels the round's model makes.\n",
        "| method | labels | pseudo-speakers | NMI | purity | pairwise precision | pairwise recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in rows:
        for side in ("trained_on", "gives"):
            q = methods[n]["pseudo_labels"].get(side)
            if not q:
                continue
            cells = [pm(q["num_pseudo_speakers"], 1.0, 1)] + [
                pm(q[k], 1.0, 3) if k in q else "–"
                for k in ("nmi", "purity", "pairwise_precision", "pairwise_recall")
            ]
            lines.append(f"| {methods[n]['label']} | {side.replace('_', ' ')} | {' | '.join(cells)} |")
    return lines + [""]


def write_report(summary: dict, scores: dict, corpus: Path, out: Path) -> str:
    """Write ``report.md`` and its figures; returns the test table (markdown) for the terminal."""
    methods = dict(sorted(summary["methods"].items(), key=lambda kv: _order(kv[0])))
    for name, m in methods.items():
        m["label"] = label(name)
    plot_dets(scores, out)
    seeds = summary["budget"]["plan"]["seeds"]
    test_table, dev_table = results_table(methods, "test"), results_table(methods, "dev")
    lines = [
        "# ssps demo report\n",
        f"{summary['date']} · commit `{summary['commit']}` · `{summary['command']}`\n",
    ]
    c = summary["corpus"]
    counts = ", ".join(
        f"{c[k]} {k.replace('_', ' ')}"
        for k in ("speakers", "train_speakers", "dev_speakers", "test_speakers", "sessions", "utterances")
        if k in c
    )
    hours = f", {c['hours']:.2f} h" if "hours" in c else ""
    lines.append(f"Corpus: `{corpus}` — {counts}{hours}\n")
    lines.append(
        f"Every continuation starts from its family's base checkpoint and trains the same steps; each was "
        f"trained with {seeds} seed{'s' if seeds > 1 else ''} (0..{seeds - 1}): figures are mean ± sample "
        "standard deviation over seeds. Δ is the change of the mean cross-session EER from the family's "
        "baseline, marked '> 2 std' when it exceeds twice the baseline's seed spread; '% of gap' is the "
        "share of the baseline-to-oracle gap closed. The oracle reads the speaker labels: an upper bound, "
        "not a method; '+ session metadata' reads the recording ids. 'supervised' trains AAM-softmax on "
        "the true speakers from scratch for the base's plus a continuation's steps; a pseudo-label round "
        "trains it on pseudo-speakers from the previous model for a continuation's steps, plus NT-Xent.\n"
    )
    lines.append("## Test lists (speakers never seen in training or in any choice): the reported figures\n")
    lines.append(test_table + "\n")
    lines += verdict_lines(methods)
    if dev_table.count("\n") > 1:
        lines.append("## Dev lists (their own speakers): where settings were chosen\n")
        lines.append(dev_table + "\n")
    lines += _pseudo_positive_table(methods)
    lines += _pseudo_label_table(methods)
    lines.append("## DET curves (test, cross-session trials, seed 0)\n\n![DET](det_cross_session.png)\n")
    if _plot_diagnostics(methods, out / "ssps_diagnostics.png"):
        lines.append(
            "## SSPS diagnostics per epoch (seed 0)\n\nCoverage (anchors that got a pseudo-positive), "
            "how often the pseudo-positive is the anchor's speaker, how often it comes from the "
            "anchor's own session, and (k-means sampling) the NMI of the clusters with the speakers.\n\n"
            "![diagnostics](ssps_diagnostics.png)\n"
        )
    pair = [n for n in ("simclr", "simclr_ssps") if n in methods]
    if len(pair) == 2:
        _plot_projection(out, [f"{n}/0" for n in pair], out / "projection.png")
        lines.append("## Test embeddings in 2-D (t-SNE, seed 0)\n\n![projection](projection.png)\n")
    lines.append("## Variance analysis: mean cosine similarity (test, mean over seeds)\n")
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
    return test_table
