"""End to end through ``ssps.cli.main``: embed, score, metrics, eval, verify; and bad inputs."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import ssps
from ssps.checkpoint import load_embedder, save_checkpoint
from ssps.cli import main
from ssps.config import load_config
from ssps.data.manifest import Utterance, write_manifest
from ssps.data.trials import write_trials
from ssps.embedder import Embedder
from ssps.eval.commands import evaluate
from ssps.eval.embed import load_embeddings
from ssps.eval.score import read_scores

SR = 16000
F0 = {"spk0": 110.0, "spk1": 190.0, "spk2": 300.0}  # a "speaker" = a harmonic tone at its own pitch


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("corpus")
    root = base / "audio"
    rng = np.random.default_rng(0)
    ids = []
    for s, (spk, f0) in enumerate(F0.items()):
        for k in range(3):
            # 0.8 s twice (equal lengths share a batch), otherwise all lengths differ.
            n = int(SR * (0.8 if k < 2 and s == 0 else 0.6 + 0.15 * (3 * s + k)))
            t = np.arange(n) / SR
            wav = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6))
            wav = 0.2 * wav + 0.02 * rng.normal(size=n)
            utt = f"{spk}/sess{k}/{k}.{'flac' if k == 1 else 'wav'}"
            (root / spk / f"sess{k}").mkdir(parents=True, exist_ok=True)
            sf.write(root / utt, wav.astype(np.float32), SR)
            ids.append(utt)
    enroll, test, labels = [], [], []
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            enroll.append(ids[i])
            test.append(ids[j])
            labels.append(ids[i].split("/")[0] == ids[j].split("/")[0])
    write_trials(base / "trials.txt", enroll, test, labels)
    write_manifest(base / "manifest.tsv", [Utterance(u, f"audio/{u}", u.split("/")[0]) for u in ids])
    cfg = load_config(overrides=["encoder.name=tdnn", "encoder.embed_dim=64", "encoder.channels=32"])
    save_checkpoint(base / "model.pt", cfg, Embedder(cfg).state_dict())
    return {"base": base, "root": root, "ids": ids, "trials": base / "trials.txt", "ckpt": base / "model.pt"}


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_stages_and_eval_agree(corpus, tmp_path, capsys):
    c = corpus
    rc, out, _ = run(
        capsys,
        "embed",
        c["ckpt"],
        "--manifest",
        c["base"] / "manifest.tsv",
        "--out",
        tmp_path / "emb.npz",
        "--batch-size",
        4,
        "--device",
        "cpu",
    )
    assert rc == 0 and "9 embeddings of dimension 64" in out
    emb = load_embeddings(tmp_path / "emb.npz")
    assert sorted(emb.ids) == sorted(c["ids"]) and emb.vectors.shape == (9, 64)
    assert len(emb.meta["checkpoint_sha256"]) == 64 and emb.meta["config"]["encoder"]["name"] == "tdnn"

    rc, _, _ = run(capsys, "score", tmp_path / "emb.npz", c["trials"], "--out", tmp_path / "scores.txt")
    assert rc == 0
    rc, out, _ = run(capsys, "metrics", tmp_path / "scores.txt", "--out", tmp_path / "results.json")
    assert rc == 0 and "EER" in out and "minDCF(p=0.01)" in out and len(out.strip().splitlines()) == 1
    staged = json.loads((tmp_path / "results.json").read_text())
    assert (staged["n_target"], staged["n_nontarget"]) == (9, 27)
    trials_sha = read_scores(tmp_path / "scores.txt").header["trials_sha256"]
    assert staged["trials_sha256"] == trials_sha and len(trials_sha) == 64

    out_dir = tmp_path / "eval"
    rc, out, _ = run(
        capsys, "eval", c["ckpt"], c["trials"], "--data", c["root"], "--out", out_dir, "--device", "cpu"
    )
    assert rc == 0 and "EER" in out
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "det.png",
        "embeddings.npz",
        "results.json",
        "scores.txt",
    ]
    assert (out_dir / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((out_dir / "results.json").read_text())
    # eval's own scores, re-read by `ssps metrics`, give the very same numbers.
    rc, _, _ = run(capsys, "metrics", out_dir / "scores.txt", "--out", tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    for key in ("eer", "min_dcf_0.01", "min_dcf_0.05", "n_target", "n_nontarget", "trials_sha256"):
        assert res[key] == again[key], key
    # The staged pipeline and eval embed the same files with the same model.
    a, b = read_scores(tmp_path / "scores.txt"), read_scores(out_dir / "scores.txt")
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    assert 0.0 <= res["eer"] <= 1.0 and res["trials_sha256"] == trials_sha

    # Python API with an in-memory embedder in train mode: mode is restored, numbers match.
    model, _ = load_embedder(c["ckpt"])
    model.train()
    direct = evaluate(model, c["trials"], c["root"], progress=False)
    assert model.training and direct["eer"] == pytest.approx(res["eer"], abs=1e-9)


def test_as_norm_cli(corpus, tmp_path, capsys):
    c = corpus
    run(capsys, "embed", c["ckpt"], "--manifest", c["base"] / "manifest.tsv", "--out", tmp_path / "e.npz")
    rc, _, _ = run(
        capsys,
        "score",
        tmp_path / "e.npz",
        c["trials"],
        "--out",
        tmp_path / "s.txt",
        "--cohort",
        tmp_path / "e.npz",
        "--top-k",
        4,
    )
    s = read_scores(tmp_path / "s.txt")
    assert rc == 0 and s.header["as_norm_top_k"] == "4" and np.all(np.isfinite(s.scores))


def test_verify_and_verifier(corpus, tmp_path, capsys):
    c = corpus
    a, b = c["root"] / c["ids"][0], c["root"] / c["ids"][4]
    rc, out, _ = run(capsys, "verify", c["ckpt"], a, b, "--threshold", "-1.0", "--device", "cpu")
    assert rc == 0 and "accept" in out
    rc, out2, _ = run(capsys, "verify", c["ckpt"], a, b, "--threshold", "1.01")
    assert rc == 0 and "reject" in out2
    v = ssps.Verifier.from_checkpoint(c["ckpt"])
    score = v.score(a, b)
    assert f"score {score:.6f}" in out and -1.0 <= score <= 1.0
    wav = sf.read(a, dtype="float32")[0]
    np.testing.assert_allclose(v.embed(wav), v.embed(a), atol=1e-6)
    assert v.embed(a).shape == (64,)
    assert v.verify(a, a, threshold=0.999)


def _assert_failed(rc, err, *needles):
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_missing_file_named_before_embedding(corpus, tmp_path, capsys):
    c = corpus
    text = c["trials"].read_text() + "1 spk0/gone/a.wav spk0/gone/b.wav\n0 spk1/x.wav spk2/gone/c.wav\n"
    (tmp_path / "t.txt").write_text(text)
    out_dir = tmp_path / "out"
    rc, _, err = run(capsys, "eval", c["ckpt"], tmp_path / "t.txt", "--data", c["root"], "--out", out_dir)
    _assert_failed(rc, err, "4 of 13 audio files missing", "spk0/gone/a.wav", "spk2/gone/c.wav")
    assert not out_dir.exists()


def test_malformed_trial_line(corpus, tmp_path, capsys):
    c = corpus
    (tmp_path / "t.txt").write_text("1 a.wav b.wav\n0 a.wav c.wav\n1 a.wav\n")
    rc, _, err = run(
        capsys, "eval", c["ckpt"], tmp_path / "t.txt", "--data", c["root"], "--out", tmp_path / "o"
    )
    _assert_failed(rc, err, "t.txt:3:")
    assert not (tmp_path / "o").exists()


def test_corrupt_checkpoint(corpus, tmp_path, capsys):
    c = corpus
    bad = tmp_path / "bad.pt"
    bad.write_bytes(c["ckpt"].read_bytes()[:1000])
    rc, _, err = run(capsys, "eval", bad, c["trials"], "--data", c["root"], "--out", tmp_path / "o")
    _assert_failed(rc, err, "bad.pt")
    assert not (tmp_path / "o").exists()
    rc, _, err = run(capsys, "embed", bad, c["root"] / c["ids"][0], "--out", tmp_path / "e.npz")
    _assert_failed(rc, err, "bad.pt")
    rc, _, err = run(capsys, "verify", bad, c["root"] / c["ids"][0], c["root"] / c["ids"][1])
    _assert_failed(rc, err, "bad.pt")
    assert list(tmp_path.iterdir()) == [bad]


def test_scores_without_targets(tmp_path, capsys):
    (tmp_path / "s.txt").write_text("# trials_sha256=abc\na b 0.5 0\na c 0.1 0\n")
    rc, _, err = run(capsys, "metrics", tmp_path / "s.txt", "--out", tmp_path / "r.json")
    _assert_failed(rc, err, "s.txt", "no target trials")
    assert not (tmp_path / "r.json").exists()


def test_unreadable_audio_leaves_no_output(corpus, tmp_path, capsys):
    c = corpus
    root = tmp_path / "audio"
    for utt in c["ids"]:
        (root / utt).parent.mkdir(parents=True, exist_ok=True)
        (root / utt).write_bytes((c["root"] / utt).read_bytes())
    (root / c["ids"][5]).write_bytes(b"RIFF not really a wav file")
    rc, _, err = run(capsys, "eval", c["ckpt"], c["trials"], "--data", root, "--out", tmp_path / "o")
    _assert_failed(rc, err, c["ids"][5])
    assert not (tmp_path / "o").exists()
