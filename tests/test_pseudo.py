"""Pseudo-labels: known groups recovered without labels, quality figures against brute force, the command's
files, label-freeness, the chain on the toy corpus, and one clear line for each bad input."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import tiny_cfg

from ssps.checkpoint import save_checkpoint
from ssps.cli import main
from ssps.config import load_config
from ssps.data.manifest import Utterance, read_manifest, write_manifest
from ssps.embedder import Embedder
from ssps.errors import SSPSError
from ssps.pseudo.chain import ChainConfig, load_chain_config, run_chain
from ssps.pseudo.cluster import CRITERIA, PseudoLabelConfig, pseudo_labels
from ssps.pseudo.labelling import pseudo_label, typical
from ssps.pseudo.quality import cluster_quality


def groups(speakers=6, sessions=3, per=15, dim=32, seed=0):
    """Speakers as random directions, each recorded in sessions that shift it a little: a speaker spans
    several k-means clusters, so finding the speakers needs the merge and the choice of S."""
    g = np.random.default_rng(seed)
    x, spk = [], []
    for s in range(speakers):
        centre = g.standard_normal(dim) * 3
        for _ in range(sessions):
            session = centre + g.standard_normal(dim) * 0.8
            x.append(session + g.standard_normal((per, dim)) * 0.3)
            spk += [s] * per
    return np.concatenate(x).astype(np.float32), np.array(spk)


def test_recovers_known_groups_without_being_told_how_many():
    x, spk = groups()
    res = pseudo_labels(x, PseudoLabelConfig(clusters=36, max_speakers=18, seed=1))
    assert res.num_speakers == 6
    assert len(np.unique(res.fine)) > 6  # the k-means stage split speakers; the merge put them back
    q = cluster_quality(res.labels, spk)
    assert q["nmi"] == pytest.approx(1.0) and q["pairwise_precision"] == q["pairwise_recall"] == 1.0
    assert res.selection["candidates"] and max(res.selection["silhouette"]) <= 1.0
    # Shuffling the rows shuffles the labels and nothing else.
    perm = np.random.default_rng(2).permutation(len(x))
    shuffled = pseudo_labels(x[perm], PseudoLabelConfig(clusters=36, max_speakers=18, seed=1))
    assert cluster_quality(shuffled.labels, res.labels[perm])["nmi"] == pytest.approx(1.0)


@pytest.mark.parametrize("criterion,extra", [("count", {"speakers": 6}), ("threshold", {"threshold": 0.5})])
def test_other_criteria(criterion, extra):
    x, spk = groups(seed=3)
    res = pseudo_labels(x, PseudoLabelConfig(clusters=36, criterion=criterion, **extra))
    assert res.num_speakers == 6 and cluster_quality(res.labels, spk)["nmi"] == pytest.approx(1.0)


def test_quality_matches_brute_force_pair_counts():
    g = np.random.default_rng(4)
    pred, true = g.integers(0, 5, 60), g.integers(0, 4, 60)
    pairs = list(itertools.combinations(range(60), 2))
    same_p = np.array([pred[i] == pred[j] for i, j in pairs])
    same_t = np.array([true[i] == true[j] for i, j in pairs])
    q = cluster_quality(pred, true)
    assert q["pairwise_precision"] == pytest.approx((same_p & same_t).sum() / same_p.sum())
    assert q["pairwise_recall"] == pytest.approx((same_p & same_t).sum() / same_t.sum())
    majority = sum(np.bincount(true[pred == c]).max() for c in np.unique(pred))
    assert q["purity"] == pytest.approx(majority / 60)
    assert cluster_quality(true, true)["nmi"] == pytest.approx(1.0)


def test_bad_clusterings_are_one_clear_error():
    x, _ = groups(speakers=2, sessions=1, per=5)
    with pytest.raises(SSPSError, match="clusters=11 must be between 2 and the 10 utterances"):
        pseudo_labels(x, PseudoLabelConfig(clusters=11))
    with pytest.raises(SSPSError, match="the clustering is empty: all 10 embeddings fell into one cluster"):
        pseudo_labels(np.ones((10, 4), np.float32), PseudoLabelConfig(clusters=3))
    with pytest.raises(SSPSError, match="criterion 'elbow'"):
        pseudo_labels(x, PseudoLabelConfig(clusters=4, criterion="elbow"))


@pytest.fixture(scope="module")
def checkpoint(toy_corpus, tmp_path_factory):
    """A random TDNN: enough to exercise the files (recovery is tested on constructed embeddings)."""
    cfg = tiny_cfg(toy_corpus)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, cfg, Embedder(cfg).state_dict())
    return path


def _relabelled(toy_corpus, out, speaker=None, session=None):
    m = read_manifest(toy_corpus / "train.tsv")
    rows = [
        Utterance(
            r.utterance,
            str(m.resolve(i)),
            r.speaker if speaker is None else speaker[i],
            r.session if session is None else session[i],
            r.duration,
        )
        for i, r in enumerate(m.rows)
    ]
    write_manifest(out, rows)
    return out


def test_pseudo_label_command_writes_the_manifest_and_quality(toy_corpus, checkpoint, tmp_path, capsys):
    out = tmp_path / "labels"
    args = ["pseudo-label", str(checkpoint), "--manifest", str(toy_corpus / "train.tsv"), "--out", str(out)]
    assert main([*args, "--clusters", "8", "--max-speakers", "6"]) == 0
    assert "24 utterances ->" in capsys.readouterr().out
    labelled = read_manifest(out / "train.tsv")
    original = read_manifest(toy_corpus / "train.tsv")
    assert [r.utterance for r in labelled.rows] == [r.utterance for r in original.rows]
    assert all(r.speaker.startswith("pseudo") for r in labelled.rows)
    assert [r.session for r in labelled.rows] == [r.session for r in original.rows]
    header = (out / "train.tsv").read_text().splitlines()[0].split("\t")
    assert header[-1] == "true_speaker"
    report = json.loads((out / "quality.json").read_text())
    assert report["num_pseudo_speakers"] == len({r.speaker for r in labelled.rows})
    assert set(report["quality"]) >= {"nmi", "purity", "pairwise_precision", "pairwise_recall"}
    assert report["quality"]["num_speakers"] == 4 and 0.0 <= report["quality"]["nmi"] <= 1.0
    assert (out / "embeddings.npz").is_file()


def test_pseudo_labels_do_not_read_the_speaker_column(toy_corpus, checkpoint, tmp_path):
    n = len(read_manifest(toy_corpus / "train.tsv"))
    cfg = PseudoLabelConfig(clusters=8, max_speakers=6)
    plain = pseudo_label(checkpoint, _relabelled(toy_corpus, tmp_path / "a.tsv"), tmp_path / "a", cfg)
    hidden = _relabelled(toy_corpus, tmp_path / "b.tsv", speaker=[""] * n)
    blind = pseudo_label(checkpoint, hidden, tmp_path / "b", cfg)
    assert "quality" in plain and "quality" not in blind
    spk = lambda d: [r.speaker for r in read_manifest(d / "train.tsv").rows]  # noqa: E731
    assert spk(tmp_path / "a") == spk(tmp_path / "b")


def test_session_metadata_gives_one_label_per_recording(toy_corpus, checkpoint, tmp_path):
    cfg = PseudoLabelConfig(clusters=4, max_speakers=4, session_metadata=True)
    pseudo_label(checkpoint, toy_corpus / "train.tsv", tmp_path / "s", cfg)
    rows = read_manifest(tmp_path / "s" / "train.tsv").rows
    per_session = {}
    for r in rows:
        per_session.setdefault(r.session, set()).add(r.speaker)
    assert all(len(v) == 1 for v in per_session.values())
    n = len(rows)
    nosess = _relabelled(toy_corpus, tmp_path / "nosess.tsv", session=[""] * n)
    with pytest.raises(SSPSError, match="session_metadata needs a session on every row"):
        pseudo_label(checkpoint, nosess, tmp_path / "t", cfg)


def test_typical_keeps_each_label_s_rows_closest_to_its_mean():
    # Each label: three rows along one axis and an outlier across it (which pulls the mean, not the order).
    x = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [-1, 0], [0, -1], [-1, 0], [-1, 0]], dtype=np.float32)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert typical(x, labels, 1.0).all()
    assert typical(x, labels, 0.75).tolist() == [True, True, False, True, True, False, True, True]
    # At least one row per label; among equals the earlier one.
    assert typical(x, labels, 0.01).tolist() == [True, False, False, False, True, False, False, False]


def test_keep_writes_the_typical_rows_and_reports_their_quality(toy_corpus, checkpoint, tmp_path, capsys):
    cfg = PseudoLabelConfig(clusters=8, max_speakers=6)
    full = pseudo_label(checkpoint, toy_corpus / "train.tsv", tmp_path / "all", cfg)
    half = pseudo_label(checkpoint, toy_corpus / "train.tsv", tmp_path / "half", replace(cfg, keep=0.5))
    rows = {r.utterance: r.speaker for r in read_manifest(tmp_path / "all" / "train.tsv").rows}
    kept = read_manifest(tmp_path / "half" / "train.tsv").rows
    assert full["kept"] == 24 and "quality_kept" not in full
    assert (
        half["kept"] == len(kept) < 24 and half["quality_kept"]["num_clusters"] == half["num_pseudo_speakers"]
    )
    assert all(rows[r.utterance] == r.speaker for r in kept)  # the same labels, fewer rows
    assert len({r.speaker for r in kept}) == half["num_pseudo_speakers"]  # no pseudo-speaker lost
    base = [
        "pseudo-label",
        str(checkpoint),
        "--manifest",
        str(toy_corpus / "train.tsv"),
        "--out",
        str(tmp_path / "o"),
    ]
    capsys.readouterr()
    assert main([*base, "--keep", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "keep=0.0 must be a fraction in (0, 1]" in err[0]


def test_bad_command_inputs_give_one_line(toy_corpus, checkpoint, tmp_path, capsys):
    base = ["pseudo-label", str(checkpoint), "--out", str(tmp_path / "o")]
    assert main([*base, "--manifest", str(toy_corpus / "train.tsv"), "--clusters", "500"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clusters=500 is more than the 24 utterances" in err[0]
    (tmp_path / "bad.tsv").write_text("utterance\tspeaker\nx\ty\n")
    assert main([*base, "--manifest", str(tmp_path / "bad.tsv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.tsv:1: expected header columns" in err[0]


def test_chain_runs_rounds_on_the_toy_corpus(toy_corpus, checkpoint, tmp_path):
    supervised = tmp_path / "supervised.yaml"
    supervised.write_text("method: {name: supervised}\n")
    overrides = [o for o in tiny_cfg.__globals__["TINY"] if not o.startswith("ssps.")]
    chain = ChainConfig(
        init=str(checkpoint),
        train_manifest=str(toy_corpus / "train.tsv"),
        rounds=2,
        supervised=str(supervised),
        overrides=(*overrides, "method.supervised.crop_seconds=0.5", "train.epochs=1"),
        pseudo=PseudoLabelConfig(clusters=8, max_speakers=6),
    )
    summary = run_chain(chain, tmp_path / "chain")
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    assert summary["rounds"][1]["labels_from"] == summary["rounds"][0]["model"]
    assert summary["rounds"][0]["labels"] == str(tmp_path / "chain" / "round_1" / "labels" / "train.tsv")
    for r in summary["rounds"]:
        assert r["num_pseudo_speakers"] >= 2 and "nmi" in r["quality"]
    assert "nmi" in summary["final"]["quality"]
    on_disk = json.loads((tmp_path / "chain" / "chain.json").read_text())
    assert on_disk == summary
    stamp = (tmp_path / "chain" / "round_2" / "train" / "latest.pt").stat().st_mtime_ns
    assert run_chain(chain, tmp_path / "chain") == summary  # a re-run finds every step done
    assert (tmp_path / "chain" / "round_2" / "train" / "latest.pt").stat().st_mtime_ns == stamp


CHAINS = sorted((Path(__file__).parents[1] / "configs").glob("**/chain*.yaml"))


@pytest.mark.parametrize("path", CHAINS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_chain_configs_load_and_name_a_supervised_config(path):
    chain = load_chain_config(path)
    repo = Path(__file__).parents[1]
    cfg = load_config(repo / chain.supervised, list(chain.overrides))  # every override names a real key
    assert cfg.method.name == "supervised"
    assert chain.rounds >= 1 and chain.pseudo.criterion in CRITERIA


def _recordings(tmp_path, recordings=4, per=3):
    """Recordings told apart only by their channel: the same kind of source through a different band gain
    and noise floor each; the speaker column is blank, the session column a decoy (all one value)."""
    import scipy.signal
    import soundfile as sf

    from ssps.data.manifest import read_manifest

    rng = np.random.default_rng(0)
    rows = []
    for r in range(recordings):
        b, a = scipy.signal.butter(4, [200 + 700 * r, 1200 + 1500 * r], btype="band", fs=16000)
        for u in range(per):
            wav = scipy.signal.lfilter(b, a, rng.standard_normal(16000)) + 0.01 * (
                r + 1
            ) * rng.standard_normal(16000)
            path = tmp_path / f"r{r}_u{u}.wav"
            sf.write(path, (0.3 * wav / np.abs(wav).max()).astype(np.float32), 16000)
            rows.append(Utterance(f"r{r}_u{u}", str(path), "", "same", 1.0))
    write_manifest(tmp_path / "rec.tsv", rows)
    return read_manifest(tmp_path / "rec.tsv")


def test_channel_groups_find_recordings_from_the_audio_alone(tmp_path):
    from ssps.pseudo.labelling import channel_groups

    groups = channel_groups(_recordings(tmp_path), 4, seed=0, sample_rate=16000)
    truth = np.repeat(np.arange(4), 3)
    assert cluster_quality(groups, truth)["nmi"] == pytest.approx(1.0)
    with pytest.raises(SSPSError, match="channel_groups=13 must be between 2 and the 12 utterances"):
        channel_groups(_recordings(tmp_path), 13, seed=0, sample_rate=16000)


def test_channel_groups_label_per_group_without_reading_speakers_or_sessions(
    toy_corpus, checkpoint, tmp_path
):
    cfg = PseudoLabelConfig(clusters=3, max_speakers=3, channel_groups=6)
    plain = pseudo_label(checkpoint, toy_corpus / "train.tsv", tmp_path / "a", cfg)
    n = len(read_manifest(toy_corpus / "train.tsv"))
    blind = _relabelled(toy_corpus, tmp_path / "blind.tsv", speaker=[""] * n, session=[""] * n)
    pseudo_label(checkpoint, blind, tmp_path / "b", cfg)
    spk = lambda d: [r.speaker for r in read_manifest(d / "train.tsv").rows]  # noqa: E731
    assert spk(tmp_path / "a") == spk(tmp_path / "b")
    assert plain["quality_channel_groups"]["num_clusters"] == 6  # diagnostic against the true sessions
    with pytest.raises(SSPSError, match="session_metadata and channel_groups are alternatives"):
        pseudo_label(
            checkpoint, toy_corpus / "train.tsv", tmp_path / "c", replace(cfg, session_metadata=True)
        )
    with pytest.raises(SSPSError, match="clusters=8 is more than the 6 channel groups"):
        pseudo_label(checkpoint, toy_corpus / "train.tsv", tmp_path / "d", replace(cfg, clusters=8))
