"""``ssps demo`` end to end on the tiny corpus with a minimal budget, and the report's analyses."""

import json

import numpy as np

from ssps.cli import main
from ssps.demo.analysis import project_2d, similarity_analysis


def test_demo_quick_writes_results_and_report(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--corpus", str(tiny_corpus), "--out", str(out)]
    assert main([*args, "--steps", "2", "--base-epochs", "1", "--cont-epochs", "2", "--batch-size", "8"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"corpus", "methods", "budget", "commit", "command", "date"}
    for name in ("simclr", "simclr_ssps", "simclr_oracle"):
        m = results["methods"][name]
        assert 0 <= m["eer"] <= 1 and 0 <= m["min_dcf"] <= 1
        assert m["n_target"] > 0 and len(m["trials_sha256"]) == 64
    assert results["methods"]["simclr_ssps"]["ssps_epochs"], "the SSPS run logged no SSPS epoch"
    # Same number of steps from the same base for baseline, SSPS and oracle (the paper's protocol).
    steps = {results["methods"][n]["steps"] for n in ("simclr", "simclr_ssps", "simclr_oracle")}
    assert steps == {6}
    report = (out / "report.md").read_text()
    for picture in ("det_cross_session.png", "ssps_diagnostics.png", "projection.png"):
        assert picture in report and (out / picture).stat().st_size > 1000
    assert "| SimCLR + SSPS |" in capsys.readouterr().out


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
