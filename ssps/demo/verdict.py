"""The report's verdict: do the label-free SSPS rows meet the project's goal on the test lists?

The goal (issue 10): over at least 3 seeds, label-free SimCLR + SSPS is below SimCLR by more than twice
SimCLR's seed standard deviation and closes at least 30 % of the SimCLR -> oracle gap; DINO + SSPS is below
DINO by more than twice DINO's. The verdict is computed from the comparisons the report already holds
(:func:`ssps.demo.evaluate.comparisons`), so it cannot disagree with the tables.
"""

from __future__ import annotations

GOAL_GAP = 0.30  # share of the baseline -> oracle gap the SimCLR + SSPS row must close
MIN_SEEDS = 3
HEADLINE = {"simclr_ssps": "simclr", "dino_ssps": "dino"}  # label-free row -> its baseline


def judgement(base: str, base_label: str, c: dict) -> str:
    """The end of a verdict line for comparison ``c`` (:func:`ssps.demo.seeds.compare`'s ``delta`` and
    ``exceeds_spread``, plus ``gap_closed`` when ``base`` is SimCLR): the goal and whether it is met."""
    beyond = c["delta"] < 0 and bool(c["exceeds_spread"])
    if base != "simclr":
        return f": goal (below {base_label} by > 2 std) **{'met' if beyond else 'not met'}**"
    gap = c.get("gap_closed")
    goal = f"below {base_label} by > 2 std and ≥ {100 * GOAL_GAP:.0f} % of the gap to the oracle"
    if gap is None:
        return f"; no oracle row, so the gap is unknown: not judged ({goal})"
    met = "met" if beyond and gap >= GOAL_GAP else "not met"
    return f", {round(100 * gap)} % of the gap to the oracle: goal ({goal}) **{met}**"


def verdict_lines(methods: dict) -> list[str]:
    """The report's verdict section: one bullet per headline row that ran with its baseline; [] if none did.

    ``methods``: the report's entries (with ``label``, ``seeds`` and the per-split ``vs_<baseline>``).
    """
    lines: list[str] = []
    for name, base in HEADLINE.items():
        c = methods.get(name, {}).get("test", {}).get("vs_" + base)
        if c is None:
            continue
        m, ref = methods[name], methods[base]
        seeds = min(len(m["seeds"]), len(ref["seeds"]))
        head = f"- {m['label']}: {100 * c['delta']:+.2f} pp vs {ref['label']}"
        if seeds < MIN_SEEDS:
            lines.append(f"{head} ({seeds} seed{'s' if seeds > 1 else ''}): not judged, the goal needs ≥ 3")
            continue
        head += f" (twice {ref['label']}'s seed spread: {200 * c['reference_std']:.2f} pp)"
        lines.append(head + judgement(base, ref["label"], c))
    if not lines:
        return []
    scope = (
        "Over this folder's seeds, which vary the continuations of one base per family: a base of another "
        "seed is another draw (`docs/experiments.md`, section 16). To judge over bases, make one folder per "
        "base seed (`--set train.seed=B`) and pool them with `ssps demo-pool`.\n"
    )
    return ["## Verdict on the project's goal (test lists)\n", scope, *lines, ""]
