"""ssps demo-pool: demo folders of different base seeds pooled run by run, the paired differences, the
verdict on the pooled runs, and one clear line for folders that do not pool."""

from __future__ import annotations

import json

import pytest

from ssps.cli import main
from ssps.config import dump_config, load_config
from ssps.demo.pool import pool
from ssps.errors import SSPSError

SHA = {"test": "t" * 64, "dev": "d" * 64}


def _folder(root, name, base_seed, eers, sha=SHA):
    """A demo folder: results.json with per-seed cross-session EERs {method: {split: [seed 0, 1, ...]}},
    and the SimCLR base's config.yaml with its train.seed."""
    folder = root / name
    (folder / "simclr_base").mkdir(parents=True)
    dump_config(load_config(overrides=[f"train.seed={base_seed}"]), folder / "simclr_base" / "config.yaml")
    methods = {}
    for method, splits in eers.items():
        per_seed: dict = {}
        for split, values in splits.items():
            for seed, eer in enumerate(values):
                fig = {"eer": eer, "trials_sha256": sha[split]}
                per_seed.setdefault(str(seed), {})[split] = {"cross_session": fig}
        methods[method] = {"seeds": list(range(len(next(iter(splits.values()))))), "per_seed": per_seed}
    (folder / "results.json").write_text(json.dumps({"methods": methods}))
    return folder


def _three(tmp_path, ssps_gain):
    """Three bases, 3 seeds each: SimCLR ~0.22 (base offsets ±0.01), SSPS ssps_gain below it, oracle 0.14."""
    folders = []
    for b, offset in enumerate((0.0, 0.01, -0.01)):
        simclr = [0.22 + offset + d for d in (-0.002, 0.0, 0.002)]
        eers = {
            "random_init": {"test": [0.45], "dev": [0.41]},
            "simclr": {"test": simclr, "dev": [v - 0.07 for v in simclr]},
            "simclr_ssps": {"test": [v - ssps_gain for v in simclr], "dev": [v - 0.08 for v in simclr]},
            "simclr_oracle": {"test": [0.14] * 3, "dev": [0.11] * 3},
        }
        folders.append(_folder(tmp_path, f"b{b}", b, eers))
    return folders


def test_pooled_means_spreads_and_paired_differences(tmp_path):
    text, figures = pool(_three(tmp_path, ssps_gain=0.01))
    simclr = figures["methods"]["simclr"]["test"]["pooled"]
    assert simclr["n"] == 9 and simclr["mean"] == pytest.approx(0.22)
    # The base offsets make the pooled spread larger than any one folder's seed spread.
    per_base = figures["methods"]["simclr"]["test"]["per_base"]
    assert all(simclr["std"] > s["std"] for s in per_base.values())
    comp = figures["comparisons"]["simclr_ssps"]["test"]
    assert comp["paired"]["mean"] == pytest.approx(-0.01) and comp["paired"]["std"] == pytest.approx(
        0, abs=1e-9
    )
    assert comp["gap_closed"] == pytest.approx(0.01 / 0.08)
    assert "random_init" not in figures["methods"]
    assert "| SimCLR |" in text and "`" + str(tmp_path / "b1") + "` -1.00" in text
    # -1 pp against twice a pooled spread of ~0.9 pp, 12 % of the gap: not met.
    assert "**not met**" in text


def test_a_pooled_gain_beyond_the_spread_and_the_gap_meets_the_goal(tmp_path):
    text, figures = pool(_three(tmp_path, ssps_gain=0.03))
    assert figures["comparisons"]["simclr_ssps"]["test"]["gap_closed"] == pytest.approx(0.375)
    assert "**met**" in text


def test_cli_writes_the_report_and_the_figures(tmp_path, capsys):
    folders = _three(tmp_path, ssps_gain=0.01)
    out = tmp_path / "pool.md"
    assert main(["demo-pool", *map(str, folders), "--out", str(out)]) == 0
    assert out.read_text() in capsys.readouterr().out
    runs = json.loads(out.with_suffix(".json").read_text())["methods"]["simclr"]["test"]["runs"]
    assert len(runs) == 9 and f"{folders[2]}#1" in runs


def test_folders_that_do_not_pool_get_one_clear_line(tmp_path, capsys):
    a, b, _ = _three(tmp_path, ssps_gain=0.01)
    with pytest.raises(SSPSError, match="at least 2 demo folders"):
        pool([a])
    same = _folder(tmp_path, "same", 0, {"simclr": {"test": [0.2]}})
    with pytest.raises(SSPSError, match="bases of the same seed"):
        pool([a, same])
    other = _folder(tmp_path, "other", 7, {"simclr": {"test": [0.2]}}, sha={"test": "x" * 64})
    with pytest.raises(SSPSError, match="other trials .*another corpus"):
        pool([a, other])
    (tmp_path / "empty").mkdir()
    assert main(["demo-pool", str(a), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "empty/results.json: no results.json" in err
    (b / "results.json").write_text("{not json")
    with pytest.raises(SSPSError, match="results.json: not valid JSON"):
        pool([a, b])


def test_a_folder_without_one_splits_runs_shows_a_dash_there(tmp_path):
    a = _folder(tmp_path, "a", 0, {"simclr": {"test": [0.2, 0.21, 0.22], "dev": [0.15, 0.16, 0.17]}})
    b = _folder(tmp_path, "b", 1, {"simclr": {"test": [0.23, 0.22, 0.24]}})
    text, figures = pool([a, b])
    assert list(figures["methods"]["simclr"]["dev"]["per_base"]) == [str(a)]
    assert "| SimCLR | 16.00 ± 1.00 | – | 16.00 ± 1.00 | 3 |" in text


def test_back_end_rows_and_pseudo_label_rounds_are_paired_with_their_own_baselines(tmp_path):
    """`ssps demo --backend` folders: each NAME+wccn is compared with its baseline's +wccn, the chain's
    rounds with SimCLR, and the gap is also measured to supervised training scored the same way."""
    folders = []
    for b, offset in enumerate((0.0, 0.01, -0.01)):
        simclr = [0.22 + offset + d for d in (-0.002, 0.0, 0.002)]
        eers = {
            "simclr": {"test": simclr},
            "simclr_ssps": {"test": [v - 0.01 for v in simclr]},
            "supervised": {"test": [0.16] * 3},
            "simclr_ssps_pl_r1": {"test": [v + 0.02 for v in simclr]},
            "simclr+wccn": {"test": [v - 0.05 for v in simclr]},
            "simclr_ssps+wccn": {"test": [v - 0.07 for v in simclr]},
            "supervised+wccn": {"test": [0.12] * 3},
            "simclr_ssps_pl_r1+wccn": {"test": [v - 0.06 for v in simclr]},
        }
        folders.append(_folder(tmp_path, f"b{b}", b, eers))
    text, figures = pool(folders)
    assert list(figures["baselines"].items()) == list(
        {
            "simclr_ssps": "simclr",
            "simclr_ssps_pl_r1": "simclr",
            "simclr_ssps+wccn": "simclr+wccn",
            "simclr_ssps_pl_r1+wccn": "simclr+wccn",
        }.items()
    )
    comps = {c: v["test"] for c, v in figures["comparisons"].items()}
    assert comps["simclr_ssps+wccn"]["paired"]["mean"] == pytest.approx(-0.02)
    # (0.17 - 0.15) / (0.17 - 0.12) of the back-end's gap; (0.22 - 0.21) / (0.22 - 0.16) by cosine
    assert comps["simclr_ssps+wccn"]["gap_closed_supervised"] == pytest.approx(0.4)
    assert comps["simclr_ssps"]["gap_closed_supervised"] == pytest.approx(1 / 6)
    assert comps["simclr_ssps_pl_r1"]["gap_closed_supervised"] == pytest.approx(-1 / 3)
    assert "gap_closed" not in comps["simclr_ssps"]  # no oracle row in these folders
    assert "40 % of the gap to supervised" in text and "-33 % of the gap to supervised" in text
    verdict = text.split("### Verdict")[1]
    assert verdict.count("\n- ") == 1 and "vs SimCLR" in verdict  # the goal is judged on the headline only
