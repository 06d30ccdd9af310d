"""``ssps demo`` end to end on the tiny corpus with a minimal budget, and the report's analyses."""

import json

import numpy as np
import pytest

from ssps.checkpoint import load_checkpoint
from ssps.cli import main
from ssps.demo.analysis import project_2d, similarity_analysis
from ssps.demo.commands import Budget, plan
from ssps.demo.evaluate import add_cluster_quality, aggregate, comparisons
from ssps.demo.report import _pseudo_label_table, label, results_table
from ssps.demo.verdict import verdict_lines
from ssps.errors import SSPSError


def test_demo_quick_writes_results_and_report(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--corpus", str(tiny_corpus), "--out", str(out)]
    budget = ["--steps", "2", "--base-epochs", "1", "--cont-epochs", "2", "--batch-size", "8", "--seeds", "2"]
    assert main([*args, *budget]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"corpus", "methods", "budget", "commit", "command", "date"}
    for name in ("simclr", "simclr_ssps", "simclr_oracle"):
        m = results["methods"][name]
        assert 0 <= m["eer"] <= 1 and 0 <= m["min_dcf"] <= 1
        assert m["n_target"] > 0 and len(m["trials_sha256"]) == 64
        # Two seeds, each scored on the test and the dev lists; the headline is the test mean.
        assert m["seeds"] == [0, 1] and set(m["per_seed"]) == {"0", "1"}
        per_seed = [m["per_seed"][s]["test"]["cross_session"]["eer"] for s in ("0", "1")]
        assert m["eer"] == pytest.approx(np.mean(per_seed))
        assert m["eer_std"] == pytest.approx(np.std(per_seed, ddof=1))
        assert m["dev"]["cross_session"]["trials_sha256"] != m["trials_sha256"]
        assert (out / f"{name}_s1" / "latest.pt").is_file()
    # The seeds are two trainings, not one run reported twice.
    w0, w1 = (load_checkpoint(out / f"simclr_s{s}" / "latest.pt")["embedder"] for s in "01")
    assert any(not w0[k].equal(w1[k]) for k in w0 if w0[k].is_floating_point())
    vs = results["methods"]["simclr_ssps"]["test"]["vs_simclr"]
    assert set(vs) >= {"delta", "exceeds_spread", "gap_closed"}
    assert results["methods"]["simclr_ssps"]["ssps_epochs"], "the SSPS run logged no SSPS epoch"
    # Same number of steps from the same base for baseline, SSPS and oracle (the paper's protocol).
    steps = {results["methods"][n]["steps"] for n in ("simclr", "simclr_ssps", "simclr_oracle")}
    assert steps == {6}
    report = (out / "report.md").read_text()
    for picture in ("det_cross_session.png", "ssps_diagnostics.png", "projection.png"):
        assert picture in report and (out / picture).stat().st_size > 1000
    assert "| SimCLR + SSPS (label-free" in capsys.readouterr().out
    assert "## Dev lists" in report and "## Test lists" in report


def test_similarity_analysis_orders_a_channel_free_embedding():
    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(5), 8)
    sessions = speakers * 2 + np.tile(np.repeat([0, 1], 4), 5)
    centres = rng.standard_normal((5, 16))
    emb = centres[speakers] + 0.1 * rng.standard_normal((40, 16))
    r = similarity_analysis(emb, speakers, sessions)
    assert r["same_speaker_cross_session"] > 0.9 > r["different_speakers"]
    assert abs(r["cross_over_within_session"] - 1) < 0.05
    # A channel-dominated embedding: the session offset outweighs the speaker.
    channel = rng.standard_normal((10, 16)) * 3
    r2 = similarity_analysis(emb + channel[sessions], speakers, sessions)
    assert r2["cross_over_within_session"] < 0.8


def test_projection_is_deterministic():
    emb = np.random.default_rng(1).standard_normal((30, 8))
    a, b = project_2d(emb), project_2d(emb)
    assert a.shape == (30, 2) and np.allclose(a, b)


def _entry(eer: float) -> dict:
    m = {"eer": eer, "min_dcf_0.01": 0.5, "min_dcf_0.05": 0.2, "n_target": 3, "n_nontarget": 9}
    sims = {"same_speaker_cross_session": 0.5, "same_session": 0.8, "different_speakers": 0.1}
    return {
        "test": {"cross_session": {**m, "trials_sha256": "t"}},
        "dev": {"cross_session": {**m, "eer": eer + 0.01, "trials_sha256": "d"}},
        "similarity": {**sims, "cross_over_within_session": 0.625},
        "steps": 6,
    }


def test_seed_figures_and_the_gap_closed_are_computed_from_the_seeds():
    methods = {
        "simclr": aggregate({s: _entry(e) for s, e in enumerate([0.20, 0.22, 0.24])}),
        "simclr_ssps": aggregate({s: _entry(e) for s, e in enumerate([0.15, 0.16, 0.17])}),
        "simclr_oracle": aggregate({s: _entry(e) for s, e in enumerate([0.10, 0.10, 0.10])}),
        "simclr_ssps_session_meta": aggregate({s: _entry(e) for s, e in enumerate([0.21, 0.20, 0.22])}),
    }
    comparisons(methods, {n: "simclr" for n in methods}, {n: "simclr_oracle" for n in methods})
    assert methods["simclr"]["eer"] == pytest.approx(0.22) and methods["simclr"]["eer_std"] == pytest.approx(
        0.02
    )
    vs = methods["simclr_ssps"]["test"]["vs_simclr"]
    assert vs["delta"] == pytest.approx(-0.06) and vs["exceeds_spread"] is True  # 0.06 > 2 x 0.02
    assert vs["gap_closed"] == pytest.approx(0.06 / 0.12)
    assert methods["simclr_ssps_session_meta"]["test"]["vs_simclr"]["exceeds_spread"] is False
    assert methods["simclr_ssps"]["dev"]["cross_session"]["eer"] == pytest.approx(0.17)
    assert "vs_simclr" not in methods["simclr"]["test"]
    table = results_table({n: {**m, "label": n} for n, m in methods.items()}, "test")
    assert "| simclr_ssps | 3 | 16.00 ± 1.00 |" in table and "(> 2 std), 50 % of gap" in table


def test_demo_refuses_an_unknown_row_or_no_seed(tmp_path):
    with pytest.raises(SSPSError, match="--rows: unknown method 'simclr_sps'"):
        plan(tmp_path, ("simclr", "simclr_sps"), Budget())
    with pytest.raises(SSPSError, match="--seeds: expected a positive"):
        plan(tmp_path, ("simclr",), Budget(seeds=0))


def test_demo_plan_validates_on_dev_and_trains_every_seed_from_one_base(tmp_path):
    jobs = {j.name: j for j in plan(tmp_path, ("simclr", "simclr_ssps", "dino"), Budget(seeds=3))}
    assert set(jobs) == {"simclr_base", "dino_base"} | {
        f"{r}_s{s}" for r in ("simclr", "simclr_ssps", "dino") for s in range(3)
    }
    for job in jobs.values():
        assert f"data.val_trials={tmp_path / 'trials' / 'dev_cross_session.txt'}" in job.overrides
    assert (
        jobs["simclr_ssps_s2"].after == ("simclr_base",)
        and "train.seed=2" in jobs["simclr_ssps_s2"].overrides
    )
    assert "train.init={dino_base}" in jobs["dino_s1"].overrides


def test_demo_plan_adds_a_supervised_upper_bound_and_a_chain_after_each_ssps_seed(tmp_path):
    (tmp_path / "train.tsv").write_text(
        "utterance\tpath\n" + "".join(f"u{i}\tu{i}.wav\n" for i in range(1504))
    )
    budget = Budget(seeds=2, rounds=3)
    jobs = {
        j.name: j for j in plan(tmp_path, ("simclr", "simclr_ssps", "supervised", "simclr_ssps_pl"), budget)
    }
    # Supervised: no base, the base's plus a continuation's epochs from a random init.
    sup = jobs["supervised_s1"]
    assert sup.after == () and "train.epochs=24" in sup.overrides and "train.seed=1" in sup.overrides
    assert not any(o.startswith("train.init") for o in sup.overrides)
    chain = jobs["simclr_ssps_pl_s1"]
    assert chain.command == "chain" and chain.after == ("simclr_ssps_s1",)
    assert "init={simclr_ssps_s1}" in chain.overrides and "rounds=3" in chain.overrides
    # The dev-chosen clustering for 1,504 utterances; each round trains a continuation's epochs on dev.
    assert {"pseudo.clusters=150", "pseudo.min_speakers=10", "pseudo.max_speakers=120"} <= set(
        chain.overrides
    )
    inner = next(o for o in chain.overrides if o.startswith("overrides="))
    assert "train.epochs=8" in inner and "dev_cross_session.txt" in inner and "train.seed=1" in inner
    assert "method.supervised.instance_weight=1.0" in inner  # the dev-chosen instance term
    with pytest.raises(SSPSError, match="simclr_ssps_pl starts from simclr_ssps's models; add simclr_ssps"):
        plan(tmp_path, ("simclr", "simclr_ssps_pl"), budget)
    with pytest.raises(SSPSError, match="--rounds: expected a positive"):
        plan(tmp_path, ("simclr_ssps", "simclr_ssps_pl"), Budget(rounds=0))
    with pytest.raises(SSPSError, match="other/train.tsv: manifest not found"):
        plan(tmp_path / "other", ("simclr_ssps", "simclr_ssps_pl"), budget)


def _verdict(eers: dict[str, list[float]]) -> str:
    methods = {n: aggregate({s: _entry(e) for s, e in enumerate(v)}) for n, v in eers.items()}
    baselines = {n: "dino" if n.startswith("dino") else "simclr" for n in methods}
    comparisons(methods, baselines, {n: "simclr_oracle" for n in methods if n.startswith("simclr")})
    return "\n".join(verdict_lines({n: {**m, "label": n} for n, m in methods.items()})).strip()


def test_the_verdict_judges_the_goal_from_the_seed_figures():
    simclr, oracle = [0.20, 0.22, 0.24], [0.10, 0.10, 0.10]
    # -6 pp, beyond 2 x 2 pp, closes 50 % of the 12 pp gap: met.
    text = _verdict({"simclr": simclr, "simclr_ssps": [0.15, 0.16, 0.17], "simclr_oracle": oracle})
    assert "- simclr_ssps: -6.00 pp vs simclr (twice simclr's seed spread: 4.00 pp), 50 % of the gap" in text
    assert text.endswith("**met**")
    # -3 pp is within 2 std: not met, although it closes 25 % of the gap.
    assert _verdict({"simclr": simclr, "simclr_ssps": [0.18, 0.19, 0.20], "simclr_oracle": oracle}).endswith(
        "**not met**"
    )
    # Beyond 2 std but 6 of a 31 pp gap (19 %): not met.
    wide = {"simclr": [0.40, 0.41, 0.42], "simclr_ssps": [0.34, 0.35, 0.36], "simclr_oracle": oracle}
    assert "19 % of the gap" in _verdict(wide) and _verdict(wide).endswith("**not met**")
    assert "no oracle row" in _verdict({"simclr": simclr, "simclr_ssps": [0.15, 0.16, 0.17]})
    assert "not judged, the goal needs ≥ 3" in _verdict({"simclr": [0.2, 0.22], "simclr_ssps": [0.1, 0.1]})
    dino = _verdict({"dino": [0.30, 0.31, 0.32], "dino_ssps": [0.25, 0.25, 0.26]})
    assert "(below dino by > 2 std) **met**" in dino and "simclr" not in dino
    assert _verdict({"dino": [0.30, 0.31, 0.32], "dino_ssps": [0.31, 0.30, 0.31]}).endswith("**not met**")
    assert _verdict({"simclr": simclr}) == ""
    assert "ssps demo-pool" in text  # the scope of a folder's seeds: one base


def test_cluster_quality_per_round_and_the_gap_to_supervised():
    methods = {
        "simclr": aggregate({s: _entry(e) for s, e in enumerate([0.20, 0.22, 0.24])}),
        "supervised": aggregate({s: _entry(e) for s, e in enumerate([0.12, 0.12, 0.12])}),
        "simclr_ssps_pl_r1": aggregate({s: _entry(e) for s, e in enumerate([0.17, 0.17, 0.17])}),
    }
    comparisons(methods, {"simclr_ssps_pl_r1": "simclr"}, {})
    assert methods["simclr_ssps_pl_r1"]["test"]["vs_simclr"]["gap_closed_supervised"] == pytest.approx(0.5)

    def chain(nmi1, nmi2, final):
        q = {"purity": 0.5, "pairwise_precision": 0.4, "pairwise_recall": 0.3}
        return {
            "rounds": [
                {"num_pseudo_speakers": 40, "quality": {**q, "nmi": nmi1}},
                {"num_pseudo_speakers": 50, "quality": {**q, "nmi": nmi2}},
            ],
            "final": {"num_pseudo_speakers": 60, "quality": {**q, "nmi": final}},
        }

    methods = {**methods, "simclr_ssps_pl_r2": dict(methods["simclr_ssps_pl_r1"])}
    add_cluster_quality(
        methods,
        ["simclr_ssps_pl_r1", "simclr_ssps_pl_r2"],
        {0: chain(0.6, 0.7, 0.9), 1: chain(0.8, 0.9, 0.9)},
    )
    r1, r2 = methods["simclr_ssps_pl_r1"]["pseudo_labels"], methods["simclr_ssps_pl_r2"]["pseudo_labels"]
    assert r1["trained_on"]["nmi"]["mean"] == pytest.approx(0.7) and r1["gives"]["nmi"][
        "mean"
    ] == pytest.approx(0.8)
    assert (
        r2["trained_on"]["num_pseudo_speakers"]["mean"] == 50
        and r2["gives"]["num_pseudo_speakers"]["mean"] == 60
    )
    assert r2["gives"]["nmi"]["std"] == 0 and r2["round"] == 2
    table = "\n".join(_pseudo_label_table({n: {**m, "label": label(n)} for n, m in methods.items()}))
    assert (
        "| SimCLR + SSPS → pseudo-labels (label-free), round 2 | gives | 60.0 ± 0.0 | 0.900 ± 0.000 |"
        in table
    )


def test_demo_supervised_and_pseudo_label_rows_end_to_end(tiny_corpus, tmp_path):
    out = tmp_path / "demo"
    rows = "simclr,simclr_ssps,supervised,simclr_ssps_pl"
    args = ["demo", "--corpus", str(tiny_corpus), "--out", str(out), "--rows", rows, "--rounds", "2"]
    budget = ["--steps", "2", "--base-epochs", "1", "--cont-epochs", "2", "--batch-size", "8"]
    assert main([*args, *budget, "--backend"]) == 0
    methods = json.loads((out / "results.json").read_text())["methods"]
    # --backend: every method again after the label-free back-end, compared within its own scoring.
    assert {"simclr+wccn", "simclr_ssps+wccn", "supervised+wccn", "simclr_ssps_pl_r2+wccn"} <= set(methods)
    after = methods["simclr_ssps_pl_r1+wccn"]["test"]
    assert "vs_simclr+wccn" in after and "gap_closed_supervised" in after["vs_simclr+wccn"]
    assert methods["simclr_ssps+wccn"]["per_seed"] != methods["simclr_ssps"]["per_seed"]
    assert methods["simclr_ssps+wccn"]["steps"] == methods["simclr_ssps"]["steps"]
    assert {"supervised", "simclr_ssps_pl_r1", "simclr_ssps_pl_r2"} <= set(methods)
    assert "simclr_ssps_pl" not in methods  # reported per round
    chain = json.loads((out / "simclr_ssps_pl_s0" / "chain.json").read_text())
    assert chain["init"] == str(out / "simclr_ssps_s0" / "latest.pt") and len(chain["rounds"]) == 2
    # Each round: a continuation's steps of supervised training on its pseudo-labels.
    assert methods["simclr_ssps_pl_r2"]["steps"] == 4 and methods["supervised"]["steps"] == 6
    quality = methods["simclr_ssps_pl_r2"]["pseudo_labels"]
    assert quality["trained_on"]["nmi"]["values"] == [chain["rounds"][1]["quality"]["nmi"]]
    assert quality["gives"]["nmi"]["values"] == [chain["final"]["quality"]["nmi"]]
    assert "gap_closed_supervised" in methods["simclr_ssps_pl_r1"]["test"]["vs_simclr"]
    report = (out / "report.md").read_text()
    assert "## Pseudo-labels per round" in report and "| supervised (labels: upper bound) | 1 |" in report
    assert "| SimCLR + SSPS (label-free" in report and "+ WCCN back-end (label-free) | 1 |" in report


def test_demo_settings_reach_every_training_job_before_the_rows_own(tmp_path):
    (tmp_path / "train.tsv").write_text("utterance\tpath\n" + "".join(f"u{i}\tu{i}.wav\n" for i in range(40)))
    rows = ("simclr", "simclr_ssps_knn1", "supervised", "simclr_ssps", "simclr_ssps_pl")
    settings = ("features.n_mels=80", "ssps.knn_neighbours=5")
    jobs = {j.name: j for j in plan(tmp_path, rows, Budget(), settings=settings)}
    for name, job in jobs.items():
        assert "features.n_mels=80" in (job.overrides if job.command != "chain" else str(job.overrides)), name
    knn1 = list(jobs["simclr_ssps_knn1_s0"].overrides)
    assert knn1.index("ssps.knn_neighbours=5") < knn1.index("ssps.knn_neighbours=1")  # the row's own wins
    with pytest.raises(SSPSError, match="--set 'n_mels': expected key=value"):
        plan(tmp_path, ("simclr",), Budget(), settings=("n_mels",))
    with pytest.raises(SSPSError, match="no comma allowed"):
        plan(tmp_path, rows, Budget(), settings=("data.augment.snr=[0,5]",))


def test_a_finished_job_is_reused_only_as_the_reuse_mode_allows(tmp_path):
    from ssps.demo.pipeline import _reusable

    cfg = {"train": {"epochs": 3, "threads": 1}, "ssps": {"margin_keep": 0.75}}
    run = tmp_path / "job"
    run.mkdir()
    assert _reusable(tmp_path / "job", cfg, "v2") == "new"  # an empty folder
    (run / "job.json").write_text(json.dumps({"config": cfg, "code": "v1"}))
    other = {**cfg, "ssps": {"margin_keep": 1.0}}
    threads = {**cfg, "train": {"epochs": 3, "threads": 2}}  # a runtime setting: the same job
    assert _reusable(run, threads, "v1") == "resume"  # interrupted, same config and code
    assert _reusable(run, cfg, "v2", same_config=True) == "stale"  # not finished: retrained by this code
    (run / "done.json").write_text("{}")
    assert _reusable(run, threads, "v1") == "done"
    assert _reusable(run, cfg, "v2") == "stale"  # other code
    assert _reusable(run, cfg, "v2", same_config=True) == "done"
    assert _reusable(run, other, "v2", same_config=True) == "stale"  # other config
    assert _reusable(run, other, "v2", any_finished=True) == "done"


def test_a_copied_demo_folder_and_an_option_added_since_keep_a_finished_job(tmp_path):
    from ssps.config import load_config, to_dict
    from ssps.demo.pipeline import _reusable

    def resolved(out, *extra):
        return to_dict(load_config(None, [f"train.init={out}/simclr_base/latest.pt", *extra]))

    old_out, new_out = tmp_path / "old", tmp_path / "new"
    recorded = resolved(old_out)
    del recorded["ssps"]["margin_keep"]  # made before the option existed: its default is the old behaviour
    run = new_out / "simclr_s0"
    run.mkdir(parents=True)
    command = ["ssps", "train", "simclr.yaml", "--out", str(old_out / "simclr_s0")]
    (run / "job.json").write_text(json.dumps({"config": recorded, "code": "v1", "command": command}))
    (run / "done.json").write_text("{}")
    assert _reusable(run, resolved(new_out), "v1") == "done"
    assert _reusable(run, resolved(new_out, "ssps.margin_keep=0.5"), "v1") == "stale"
    assert _reusable(run, resolved(tmp_path / "elsewhere"), "v1") == "stale"  # another base
    recorded["ssps"]["removed_option"] = 1  # a key this code cannot read: never equal
    (run / "job.json").write_text(json.dumps({"config": recorded, "code": "v1", "command": command}))
    assert _reusable(run, resolved(new_out), "v1") == "stale"
