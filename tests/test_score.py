"""Scoring (cosine, AS-norm) against plain loops; score and embedding files; length-bucketed embedding."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn as nn

from ssps.data.trials import read_trials, write_trials
from ssps.errors import SSPSError
from ssps.eval.embed import Embeddings, embed_files, load_embeddings, save_embeddings
from ssps.eval.score import read_scores, score_trials, write_scores


def _setup(tmp_path, n_utt=12, dim=8, n_trials=40, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"spk{i % 4}/s/{i}.wav" for i in range(n_utt)]
    vectors = rng.normal(size=(n_utt, dim)).astype(np.float32) * rng.uniform(0.5, 3, (n_utt, 1))
    enroll = [ids[i] for i in rng.integers(0, n_utt, n_trials)]
    test = [ids[i] for i in rng.integers(0, n_utt, n_trials)]
    labels = [e.split("/")[0] == t.split("/")[0] for e, t in zip(enroll, test, strict=True)]
    write_trials(tmp_path / "trials.txt", enroll, test, labels)
    return Embeddings(ids, vectors), read_trials(tmp_path / "trials.txt")


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_cosine_matches_loop(tmp_path):
    emb, trials = _setup(tmp_path)
    scores = score_trials(emb, trials)
    vec = dict(zip(emb.ids, emb.vectors, strict=True))
    ref = [_cos(vec[e], vec[t]) for e, t in zip(trials.enroll, trials.test, strict=True)]
    np.testing.assert_allclose(scores, ref, rtol=0, atol=1e-12)
    assert np.all(np.abs(scores) <= 1 + 1e-12)


@pytest.mark.parametrize("top_k", [3, 5, 1000])
def test_as_norm_matches_loop(tmp_path, top_k):
    emb, trials = _setup(tmp_path)
    rng = np.random.default_rng(1)
    cohort = Embeddings([f"c{i}" for i in range(20)], rng.normal(size=(20, 8)).astype(np.float32))
    scores = score_trials(emb, trials, cohort, top_k=top_k)
    vec = dict(zip(emb.ids, emb.vectors, strict=True))

    def stats(v):
        c = sorted((_cos(v, w) for w in cohort.vectors), reverse=True)[:top_k]
        return np.mean(c), np.std(c)

    for k, (e, t) in enumerate(zip(trials.enroll, trials.test, strict=True)):
        s = _cos(vec[e], vec[t])
        (me, se), (mt, st) = stats(vec[e]), stats(vec[t])
        assert scores[k] == pytest.approx(0.5 * ((s - me) / se + (s - mt) / st), abs=1e-9)


def test_as_norm_bad_arguments(tmp_path):
    emb, trials = _setup(tmp_path)
    cohort = Embeddings(["c0", "c1", "c2"], np.ones((3, 5), np.float32))
    with pytest.raises(SSPSError, match="5-d"):
        score_trials(emb, trials, cohort)
    with pytest.raises(SSPSError, match="top-k"):
        score_trials(emb, trials, cohort, top_k=1)


def test_missing_embedding(tmp_path):
    emb, trials = _setup(tmp_path)
    partial = Embeddings(emb.ids[2:], emb.vectors[2:])
    used = set(trials.files()) - set(emb.ids[2:])
    with pytest.raises(SSPSError, match=f"{len(used)} utterance\\(s\\) have no embedding"):
        score_trials(partial, trials)


def test_score_file_round_trip_is_exact(tmp_path):
    emb, trials = _setup(tmp_path)
    scores = score_trials(emb, trials)
    write_scores(tmp_path / "scores.txt", trials, scores, {"note": "x"})
    back = read_scores(tmp_path / "scores.txt")
    np.testing.assert_array_equal(back.scores, scores)  # bit-exact: repr round-trips float64
    np.testing.assert_array_equal(back.labels, trials.labels)
    assert back.enroll == trials.enroll and back.test == trials.test
    assert back.header["trials_sha256"] == trials.sha256 and back.header["note"] == "x"


@pytest.mark.parametrize(
    ("line", "what"), [("a b 0.5", "ENROLL TEST SCORE"), ("a b x 1", "not a number"), ("a b 0.1 2", "1|0")]
)
def test_malformed_score_line(tmp_path, line, what):
    (tmp_path / "s.txt").write_text(f"# trials_sha256=abc\na b 0.25 1\n{line}\n")
    with pytest.raises(SSPSError, match=what) as e:
        read_scores(tmp_path / "s.txt")
    assert "s.txt:3:" in str(e.value)


def test_embeddings_file_round_trip(tmp_path):
    emb, _ = _setup(tmp_path)
    meta = {"checkpoint_sha256": "f" * 64, "config": {"encoder": {"name": "tdnn"}}}
    save_embeddings(tmp_path / "e.npz", emb.ids, emb.vectors, meta)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    back = load_embeddings(tmp_path / "e.npz")
    assert back.ids == emb.ids and back.meta == meta
    np.testing.assert_array_equal(back.vectors, emb.vectors)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(SSPSError, match="junk.npz"):
        load_embeddings(tmp_path / "junk.npz")
    with pytest.raises(SSPSError, match="duplicate"):
        save_embeddings(tmp_path / "d.npz", ["a", "a"], np.zeros((2, 3)), {})


class ShapeRecorder(nn.Module):
    """Per-utterance statistics (so zero padding would show) and a log of every batch shape."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.shapes = []

    def forward(self, wav):
        self.shapes.append(tuple(wav.shape))
        return torch.stack([wav.mean(1), wav.std(1), wav.abs().max(1).values], dim=1) * self.scale


def test_embed_files_batches_only_equal_lengths(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [8000, 4000, 8000, 8000, 6000, 4000, 8000, 8000, 8000]
    paths, ids = [], []
    for i, n in enumerate(lengths):
        paths.append(tmp_path / f"{i}.wav")
        ids.append(f"u{i}")
        sf.write(paths[-1], rng.uniform(-0.5, 0.5, n).astype(np.float32), 16000, subtype="FLOAT")
    model = ShapeRecorder()
    out_ids, batched = embed_files(model, paths, ids, batch_size=4, progress=False)
    assert out_ids == ids and batched.dtype == np.float32 and batched.shape == (9, 3)
    assert all(b <= 4 for b, _ in model.shapes) and sum(b for b, _ in model.shapes) == 9
    assert sorted(model.shapes) == [(1, 6000), (2, 4000), (2, 8000), (4, 8000)]
    model.shapes.clear()
    _, single = embed_files(model, paths, ids, batch_size=1, progress=False)
    np.testing.assert_allclose(batched, single, rtol=1e-6, atol=1e-7)
    for i, p in enumerate(paths):  # each row is its own file's embedding
        wav = sf.read(p, dtype="float32")[0]
        assert batched[i, 0] == pytest.approx(wav.mean(), abs=1e-6)
