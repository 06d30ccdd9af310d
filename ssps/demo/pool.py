"""Pool demo folders that differ only in their base's seed: the spread of a whole pipeline, not of a
continuation.

A demo folder trains one base per family and continues it with seeds 0..N-1, so its seed spread leaves out
the base's own randomness, and a gain measured on one base may not hold on another. ``ssps demo-pool`` reads
several folders made with ``--set train.seed=B`` (one base seed each; the continuations still take seeds
0..N-1), checks that they scored the same trial lists, and reports over every (base, seed) run:

- each method's cross-session EER per base and pooled (mean ± std over all runs);
- each headline comparison (SimCLR + SSPS vs SimCLR, DINO + SSPS vs DINO) paired by (base, seed): the mean
  difference and its spread, the difference per base, and the share of the SimCLR -> oracle gap closed
  (and of the SimCLR -> supervised gap where the folders have the supervised row); the same for the
  pseudo-label rounds against SimCLR, and for every pair again after the scoring back-end
  (``ssps demo --backend``: ``NAME+wccn`` against its baseline's ``+wccn``);
- the project's goal (:mod:`ssps.demo.verdict`) judged on the pooled runs: below the baseline by more than
  twice the baseline's pooled spread, and (SimCLR) at least 30 % of the gap to the oracle.

>>> runs = {("a", 0): 0.20, ("a", 1): 0.22, ("b", 0): 0.24}
>>> round(_pooled(runs)["mean"], 4), _pooled(runs)["n"]
(0.22, 3)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssps.demo.evaluate import BACKEND, backend_suffix
from ssps.demo.report import label
from ssps.demo.seeds import compare, gap_closed, pm, summarise
from ssps.demo.verdict import HEADLINE, MIN_SEEDS, judgement
from ssps.errors import SSPSError
from ssps.utils.files import atomic_write_text

SPLITS = ("test", "dev")
LIST = "cross_session"  # the headline list of each split


def _read(folder: Path) -> dict:
    path = folder / "results.json"
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise SSPSError(f"{path}: no results.json (run `ssps demo --out {folder}` first)") from None
    except json.JSONDecodeError as e:
        raise SSPSError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(results.get("methods"), dict):
        raise SSPSError(f"{path}: expected a 'methods' table (a results.json written by ssps demo)")
    return results


def _base_seeds(folder: Path) -> dict[str, int]:
    """{family: train.seed} of the folder's base jobs (``<family>_base/config.yaml``)."""
    from ssps.config import load_config

    out = {}
    for path in sorted(folder.glob("*_base/config.yaml")):
        try:
            out[path.parent.name.removesuffix("_base")] = load_config(path).train.seed
        except SSPSError as e:
            raise SSPSError(f"{path}: {e}") from None
    return out


def _runs(methods: dict, name: str, split: str, folder: str) -> dict[tuple[str, int], float]:
    """{(folder, seed): EER} of one method on one split's cross-session list."""
    out = {}
    for seed, figures in methods.get(name, {}).get("per_seed", {}).items():
        eer = figures.get(split, {}).get(LIST, {}).get("eer")
        if eer is not None:
            out[(folder, int(seed))] = float(eer)
    return out


def _pooled(runs: dict) -> dict:
    return summarise(list(runs.values()))


def _trials(methods: dict) -> dict[str, str]:
    """{split/list: sha256} of the trial lists a folder scored (read from any method's seeds)."""
    out = {}
    for entry in methods.values():
        for figures in entry.get("per_seed", {}).values():
            for split, lists in figures.items():
                for key, fig in lists.items():
                    if isinstance(fig, dict) and "trials_sha256" in fig:
                        out[f"{split}/{key}"] = fig["trials_sha256"]
    return out


def pool(folders: list[Path]) -> tuple[str, dict]:
    """(Markdown report, figures) over the demo folders; raises SSPSError on folders that do not pool."""
    if len(folders) < 2:
        raise SSPSError(f"expected at least 2 demo folders (one per base seed), got {len(folders)}")
    names = [str(f) for f in folders]
    if len(set(names)) != len(names):
        raise SSPSError("a folder is named twice")
    results = {str(f): _read(f) for f in folders}
    first = names[0]
    seeds: dict[tuple[str, int], str] = {}
    for f in folders:
        for family, seed in _base_seeds(f).items():
            if (family, seed) in seeds:
                raise SSPSError(
                    f"{f} and {seeds[family, seed]} continue {family} bases of the same seed "
                    f"({seed}); pool folders made with different --set train.seed=B"
                )
            seeds[family, seed] = str(f)
    trials = {n: _trials(r["methods"]) for n, r in results.items()}
    for n in names[1:]:
        differ = sorted(
            k for k in trials[first].keys() & trials[n].keys() if trials[first][k] != trials[n][k]
        )
        if differ:
            raise SSPSError(f"{n} scored other trials than {first} ({differ[0]}): another corpus?")
    # random init is one untrained model whatever the base seed: nothing to pool.
    shared = [
        m
        for m in results[first]["methods"]
        if m != "random_init" and all(m in r["methods"] for r in results.values())
    ]
    figures: dict = {"folders": names, "methods": {}, "comparisons": {}, "baselines": {}}
    for m in shared:
        figures["methods"][m] = {}
        for split in SPLITS:
            runs = {}
            for n in names:
                runs |= _runs(results[n]["methods"], m, split, n)
            if runs:
                per_base = {
                    n: summarise(v) for n in names if (v := [x for (f, _), x in runs.items() if f == n])
                }
                figures["methods"][m][split] = {"pooled": _pooled(runs), "per_base": per_base, "runs": runs}
    figures["baselines"] = dict(_pairs(figures["methods"]))
    for cand, base in figures["baselines"].items():
        figures["comparisons"][cand] = {split: _compare(figures, cand, base, split) for split in SPLITS}
    return _markdown(figures), _jsonable(figures)


def _pairs(methods: dict) -> list[tuple[str, str]]:
    """(candidate, baseline) of every comparison the pooled methods allow: the headline ones, the
    pseudo-label rounds against SimCLR, and each again after the scoring back-end."""
    rounds = [m for m in methods if m.startswith("simclr_ssps_pl_r") and not m.endswith(BACKEND)]
    pairs = [*HEADLINE.items(), *((m, "simclr") for m in rounds)]
    pairs += [(c + BACKEND, b + BACKEND) for c, b in pairs]
    return [(c, b) for c, b in pairs if c in methods and b in methods]


def _compare(figures: dict, cand: str, base: str, split: str) -> dict:
    c, b = figures["methods"][cand].get(split), figures["methods"][base].get(split)
    if not c or not b:
        return {}
    pairs = sorted(c["runs"].keys() & b["runs"].keys())
    diffs = [c["runs"][p] - b["runs"][p] for p in pairs]
    out = {"paired": summarise(diffs) if diffs else None, "baseline": b["pooled"], "candidate": c["pooled"]}
    out["per_base"] = {
        n: summarise([c["runs"][p] - b["runs"][p] for p in pairs if p[0] == n])
        for n in figures["folders"]
        if any(p[0] == n for p in pairs)
    }
    suffix = backend_suffix(base)
    if base.removesuffix(BACKEND) != "simclr":
        return out
    for key, upper in (("gap_closed", "simclr_oracle"), ("gap_closed_supervised", "supervised")):
        bound = figures["methods"].get(upper + suffix, {}).get(split)
        if bound:
            out[key] = gap_closed(c["pooled"]["mean"], b["pooled"]["mean"], bound["pooled"]["mean"])
    return out


def _verdict(cand: str, base: str, comp: dict) -> str:
    paired, ref = comp["paired"] or {"mean": float("nan"), "std": float("nan")}, comp["baseline"]
    delta = comp["candidate"]["mean"] - ref["mean"]
    head = (
        f"- {label(cand)}: {100 * delta:+.2f} pp vs {label(base)} over {comp['candidate']['n']} runs "
        f"(paired by run: {100 * paired['mean']:+.2f} ± {100 * paired['std']:.2f} pp; twice {label(base)}'s "
        f"pooled spread: {200 * ref['std']:.2f} pp)"
    )
    if min(ref["n"], comp["candidate"]["n"]) < MIN_SEEDS:
        return f"{head}: not judged, the goal needs ≥ {MIN_SEEDS} runs"
    c = {**compare(comp["candidate"], ref), "gap_closed": comp.get("gap_closed")}
    return head + judgement(base, label(base), c)


def _markdown(figures: dict) -> str:
    names = figures["folders"]
    lines = [
        "# Demo folders pooled over their bases\n",
        "Folders (one base seed each): " + ", ".join(f"`{n}`" for n in names) + ".",
        "Cross-session EER %, mean ± std over each folder's continuation seeds, and pooled over every "
        "(base, seed) run.\n",
    ]
    for split in SPLITS:
        title = (
            "Test lists: the reported figures" if split == "test" else "Dev lists: where settings are chosen"
        )
        lines += [f"## {title}\n", "| method | " + " | ".join(f"`{n}`" for n in names) + " | pooled | runs |"]
        lines.append("|---" * (len(names) + 3) + "|")
        for m, entry in figures["methods"].items():
            if split not in entry:
                continue
            per_base = entry[split]["per_base"]  # a folder without this split's runs is left out of it
            cells = [pm(per_base[n]) if n in per_base else "–" for n in names]
            pooled = entry[split]["pooled"]
            lines.append(f"| {label(m)} | " + " | ".join(cells) + f" | {pm(pooled)} | {pooled['n']} |")
        lines.append("")
        comps = [
            (c, figures["baselines"][c], v[split]) for c, v in figures["comparisons"].items() if v.get(split)
        ]
        if comps:
            lines.append("Paired differences (candidate − baseline, same base and seed), pp, per folder:\n")
            for cand, base, comp in comps:
                per = ", ".join(
                    f"`{n}` {100 * s['mean']:+.2f}" + (f" ± {100 * s['std']:.2f}" if s["n"] > 1 else "")
                    for n, s in comp["per_base"].items()
                )
                gaps = [
                    f"{100 * comp[k]:.0f} % of the gap to {name}"
                    for k, name in (("gap_closed", "the oracle"), ("gap_closed_supervised", "supervised"))
                    if comp.get(k) is not None
                ]
                lines.append(f"- {label(cand)} vs {label(base)}: {per}" + "".join(f"; {g}" for g in gaps))
            lines.append("")
        judged = [(c, b, comp) for c, b, comp in comps if HEADLINE.get(c) == b]
        if split == "test" and judged:
            lines += ["### Verdict on the project's goal, pooled over the bases\n"]
            lines += [_verdict(cand, base, comp) for cand, base, comp in judged]
            lines.append("")
    return "\n".join(lines)


def _jsonable(figures: dict) -> dict:
    """The figures with each run keyed "folder#seed" (JSON keys are strings)."""
    out = json.loads(json.dumps({k: v for k, v in figures.items() if k != "methods"}))
    out["methods"] = {
        m: {
            split: {**e, "runs": {f"{f}#{s}": v for (f, s), v in e["runs"].items()}}
            for split, e in entry.items()
        }
        for m, entry in figures["methods"].items()
    }
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo-pool", help="pool demo folders made with different base seeds (--set train.seed=B)"
    )
    p.add_argument("folders", nargs="+", type=Path, help="demo folders, one base seed each")
    p.add_argument(
        "--out", type=Path, help="write the report here (Markdown) and the figures beside it (.json)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    text, figures = pool(args.folders)
    if args.out:
        atomic_write_text(args.out, text)
        atomic_write_text(args.out.with_suffix(".json"), json.dumps(figures, indent=2) + "\n")
    print(text)
    return 0
