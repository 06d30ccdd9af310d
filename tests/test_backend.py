"""The label-free augmentation-WCCN back-end: the algebra, a constructed nuisance it must remove, the file,
the fit on audio (label-free: the speaker column changes nothing) and the command line."""

import json

import numpy as np
import pytest
import torch

from ssps.checkpoint import load_embedder, save_checkpoint
from ssps.cli import main
from ssps.config import load_config
from ssps.data.manifest import read_manifest, write_manifest
from ssps.embedder import Embedder
from ssps.errors import SSPSError
from ssps.eval.backend import (
    Backend,
    backend_for,
    fit_wccn,
    load_backend,
    normalise,
    save_backend,
    within_covariance,
)
from ssps.eval.metrics import eer


def test_wccn_whitens_the_within_utterance_scatter():
    g = np.random.default_rng(0)
    views = g.standard_normal((3, 400, 5)) * [1, 2, 3, 4, 5] + g.standard_normal((400, 5))
    b = fit_wccn(views, floor=1e-9)
    w = within_covariance(normalise(views))
    np.testing.assert_allclose(b.matrix.T @ w @ b.matrix, np.eye(5), atol=1e-8)
    np.testing.assert_allclose(b.mean, normalise(views[0]).mean(axis=0))


def _nuisance_case(seed: int = 0, speakers: int = 12, utterances: int = 20):
    """Speakers on 4 axes, a recording nuisance on 2 more that augmentation also moves."""
    g = np.random.default_rng(seed)
    centres = g.standard_normal((speakers, 4))
    speaker = np.repeat(np.arange(speakers), utterances)
    voice = centres[speaker] + 0.3 * g.standard_normal((len(speaker), 4))
    channel = 2.0 * g.standard_normal((len(speaker), 2))  # each utterance's own recording
    clean = np.hstack([voice, channel])
    moved = [clean + np.hstack([0 * voice, 2.0 * g.standard_normal(channel.shape)]) for _ in range(2)]
    return np.stack([clean, *moved]), speaker


def _pair_eer(x: np.ndarray, speaker: np.ndarray) -> float:
    x = normalise(x)
    i, j = np.triu_indices(len(x), 1)
    return eer(np.einsum("nd,nd->n", x[i], x[j]), speaker[i] == speaker[j])


def test_backend_removes_a_nuisance_that_augmentation_moves():
    views, speaker = _nuisance_case()
    b = fit_wccn(views)
    test, spk = _nuisance_case(seed=1)  # other utterances of other speakers: the back-end generalises
    before, after = _pair_eer(test[0], spk), _pair_eer(b.apply(test[0]), spk)
    assert after < 0.5 * before, (before, after)
    identity = Backend(b.mean, np.eye(6))
    assert _pair_eer(identity.apply(test[0]), spk) > 0.8 * before  # centring alone does not do it


def test_backend_file_round_trip_and_bad_inputs(tmp_path):
    views, _ = _nuisance_case()
    b = fit_wccn(views, meta={"views": 2})
    save_backend(tmp_path / "b.npz", b)
    back = load_backend(tmp_path / "b.npz")
    x = np.random.default_rng(2).standard_normal((5, 6))
    np.testing.assert_array_equal(back.apply(x), b.apply(x))
    assert back.meta == {"views": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["b.npz"]  # no temporary file left
    with pytest.raises(SSPSError, match=r"the back-end is for 6-d embeddings, got shape \(5, 4\)"):
        b.apply(x[:, :4])
    with pytest.raises(SSPSError, match="back-end file not found"):
        load_backend(tmp_path / "none.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(SSPSError, match="text.npz: cannot read the back-end"):
        load_backend(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", mean=np.zeros(3))
    with pytest.raises(SSPSError, match="other.npz: not an ssps back-end file"):
        load_backend(tmp_path / "other.npz")
    np.savez(tmp_path / "shape.npz", mean=np.zeros(3), matrix=np.eye(4))
    with pytest.raises(SSPSError, match=r"mean \(3,\) and matrix \(4, 4\) do not fit"):
        load_backend(tmp_path / "shape.npz")
    with pytest.raises(SSPSError, match="views >= 2"):
        fit_wccn(views[:1])
    with pytest.raises(SSPSError, match="floor=2"):
        fit_wccn(views, floor=2)


@pytest.fixture(scope="module")
def model(toy_corpus, tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config(overrides=["encoder.name=tdnn", "encoder.embed_dim=16", "encoder.channels=16"])
    path = tmp_path_factory.mktemp("backend_model") / "model.pt"
    save_checkpoint(path, cfg, Embedder(cfg).state_dict())
    return path


def _fit(model, manifest, **kw):
    embedder, cfg = load_embedder(model)
    return backend_for(model, embedder, cfg, manifest, views=2, crop_seconds=1.0, progress=False, **kw)


def test_fit_on_audio_reads_no_label(model, toy_corpus, tmp_path):
    b = _fit(model, toy_corpus / "train.tsv")
    assert b.matrix.shape == (16, 16) and b.meta["utterances"] == 24 and b.meta["views"] == 2
    m = read_manifest(toy_corpus / "train.tsv")
    rows = m.rows[::-1][:1] + m.rows[:-1]  # every speaker and session label moved to another file
    shuffled = [r._replace(speaker=s.speaker, session=s.session) for r, s in zip(m.rows, rows, strict=True)]
    write_manifest(
        tmp_path / "shuffled.tsv", [r._replace(path=str(m.resolve(i))) for i, r in enumerate(shuffled)]
    )
    other = _fit(model, tmp_path / "shuffled.tsv")
    np.testing.assert_array_equal(other.matrix, b.matrix)
    embedder, cfg = load_embedder(model)
    with pytest.raises(SSPSError, match="views=0 must be >= 1"):
        backend_for(model, embedder, cfg, toy_corpus / "train.tsv", views=0, progress=False)


def test_fit_needs_augmentation(model, toy_corpus, tmp_path):
    embedder, cfg = load_embedder(model)
    cfg = load_config(overrides=["data.augment.strategy=none"])
    with pytest.raises(SSPSError, match="data.augment.strategy is 'none'"):
        backend_for(model, embedder, cfg, toy_corpus / "train.tsv")


def test_cli_backend_then_eval_and_score(model, toy_corpus, tmp_path, capsys):
    args = ["--manifest", toy_corpus / "train.tsv", "--views", "2", "--crop-seconds", "1"]
    assert main([str(a) for a in ["backend", model, *args, "--out", tmp_path / "b.npz"]]) == 0
    assert "16-d embeddings, 2 views" in capsys.readouterr().out
    common = [model, toy_corpus / "trials.txt", "--data", toy_corpus / "wav"]
    assert main([str(a) for a in ["eval", *common, "--out", tmp_path / "plain"]]) == 0
    assert (
        main([str(a) for a in ["eval", *common, "--out", tmp_path / "wccn", "--backend", tmp_path / "b.npz"]])
        == 0
    )
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    wccn = json.loads((tmp_path / "wccn" / "results.json").read_text())
    assert "backend_sha256" in wccn and "backend_sha256" not in plain
    assert wccn["eer"] != plain["eer"]  # the back-end changed the scores
    emb = tmp_path / "wccn" / "embeddings.npz"

    def score(out, backend):
        return main(
            [str(a) for a in ["score", emb, toy_corpus / "trials.txt", "--out", out, "--backend", backend]]
        )

    assert score(tmp_path / "s.txt", tmp_path / "b.npz") == 0
    assert "backend_sha256" in (tmp_path / "s.txt").read_text()
    save_backend(tmp_path / "wrong.npz", Backend(np.zeros(8), np.eye(8)))
    capsys.readouterr()
    rc = score(tmp_path / "t.txt", tmp_path / "wrong.npz")
    assert rc == 2 and "the back-end is for 8-d embeddings" in capsys.readouterr().err
    assert not (tmp_path / "t.txt").exists()


def test_verifier_scores_after_the_backend(model, toy_corpus, tmp_path, capsys):
    from ssps.eval.verifier import Verifier

    b = _fit(model, toy_corpus / "train.tsv")
    save_backend(tmp_path / "b.npz", b)
    a, c = toy_corpus / "wav/spk0/sess0/000.wav", toy_corpus / "wav/spk1/sess1/002.wav"
    plain = Verifier.from_checkpoint(model)
    v = Verifier.from_checkpoint(model, backend=tmp_path / "b.npz")
    y = b.apply(np.stack([plain.embed(a), plain.embed(c)]))
    expected = float(normalise(y[0]) @ normalise(y[1]))
    assert v.score(a, c) == pytest.approx(expected, abs=1e-6) and v.score(a, c) != pytest.approx(
        plain.score(a, c)
    )
    assert main(["verify", str(model), str(a), str(c), "--backend", str(tmp_path / "b.npz")]) == 0
    assert f"score {expected:.6f}" in capsys.readouterr().out


def test_pseudo_labels_after_the_backend(model, toy_corpus, tmp_path):
    from ssps.pseudo.cluster import PseudoLabelConfig
    from ssps.pseudo.labelling import pseudo_label

    cfg = PseudoLabelConfig(clusters=8, criterion="count", speakers=4, wccn=True, wccn_views=2)
    report = pseudo_label(model, toy_corpus / "train.tsv", tmp_path / "pl", cfg)
    assert report["settings"]["wccn"] and report["num_pseudo_speakers"] == 4
    fitted = load_backend(tmp_path / "pl" / "backend.npz")
    assert fitted.meta["views"] == 2 and fitted.meta["utterances"] == 24
