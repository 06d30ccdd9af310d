"""Label-free by construction: SSPS without labels draws the same positives whatever the speaker column says.

Every sampler except ``oracle`` must draw exactly the same positives (and a run end with exactly the same
weights) when the manifest's speaker column is permuted or removed; the samplers that use no recording
metadata must also ignore the session column. The oracle is checked to react, so the comparison can fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import tiny_cfg

from ssps.data.manifest import Utterance, read_manifest, write_manifest
from ssps.sampling.ssps import SAMPLERS
from ssps.train.run import Run
from ssps.train.trainer import train

FREE = [name for name in SAMPLERS.names() if name != "oracle"]
METADATA = {
    "no metadata": [],
    "+ session metadata (exclusion)": ["ssps.exclude_same_session=true"],
    "+ session metadata (pooling)": ["ssps.exclude_same_session=true", "ssps.session_pooling=true"],
}


def _variant(corpus: Path, out: Path, column: str, how: str) -> Path:
    """A copy of the toy manifest (absolute paths) with ``column`` permuted across rows or emptied."""
    m = read_manifest(corpus / "train.tsv")
    values = [getattr(r, column) for r in m.rows]
    if how == "permuted":
        values = list(np.random.default_rng(1).permutation(values))
        assert values != [getattr(r, column) for r in m.rows]
    else:
        values = [""] * len(values)
    rows = [
        Utterance(
            r.utterance,
            str(m.resolve(i)),
            values[i] if column == "speaker" else r.speaker,
            values[i] if column == "session" else r.session,
            r.duration,
        )
        for i, r in enumerate(m.rows)
    ]
    path = out / f"{column}_{how}.tsv"
    write_manifest(path, rows)
    return path


def _draws(manifest: Path, out: Path, sampling: str, extra: list[str]) -> list[torch.Tensor]:
    """The Run's sampler, fed the same embeddings, clustered and asked for two batches of positives."""
    cfg = tiny_cfg(
        manifest.parent, f"data.train_manifest={manifest}", "ssps.enabled=true", f"ssps.sampling={sampling}",
        "ssps.positive_queue_size=24", *extra,
    )  # fmt: skip
    sampler = Run(cfg, out, torch.device("cpu")).sampler
    n = sampler.reference.embeddings.shape[0]
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(n)
    sampler.write_reference(idx, torch.randn(n, cfg.encoder.embed_dim, generator=g))
    sampler.write_positive(idx, torch.randn(n, cfg.encoder.embed_dim, generator=g))
    sampler.cluster(seed=3)
    out_ = []
    for step in range(2):
        res = sampler.sample(torch.randperm(n, generator=g)[:8], step=step)
        out_ += [res.positives, res.found, res.source_indices]
    return out_


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("metadata", list(METADATA))
@pytest.mark.parametrize("sampling", FREE)
def test_label_free_samplers_ignore_the_speaker_column(toy_corpus, tmp_path, sampling, metadata):
    extra = METADATA[metadata]
    base = _draws(toy_corpus / "train.tsv", tmp_path / "a", sampling, extra)
    for how in ("permuted", "removed"):
        other = _draws(_variant(toy_corpus, tmp_path, "speaker", how), tmp_path / how, sampling, extra)
        assert _same(base, other), f"{sampling} {metadata}: draws changed with the speaker column {how}"


@pytest.mark.parametrize("sampling", FREE)
def test_samplers_without_metadata_ignore_the_session_column(toy_corpus, tmp_path, sampling):
    base = _draws(toy_corpus / "train.tsv", tmp_path / "a", sampling, [])
    for how in ("permuted", "removed"):
        other = _draws(_variant(toy_corpus, tmp_path, "session", how), tmp_path / how, sampling, [])
        assert _same(base, other), f"{sampling}: draws changed with the session column {how}"


def test_the_oracle_does_read_labels(toy_corpus, tmp_path):
    # The comparison above can fail: the one sampler that uses labels draws differently once they move.
    base = _draws(toy_corpus / "train.tsv", tmp_path / "a", "oracle", [])
    other = _draws(_variant(toy_corpus, tmp_path, "speaker", "permuted"), tmp_path / "b", "oracle", [])
    assert not _same(base, other)


@pytest.mark.parametrize(
    "method, sampling", [("simclr", "kmeans-repr"), ("dino", "knn")], ids=["simclr-kmeans-repr", "dino-knn"]
)
def test_ssps_training_ends_the_same_without_labels(toy_corpus, tmp_path, method, sampling):
    """End to end: fill epoch + SSPS epoch from manifests whose speaker / session columns differ."""
    extra = [
        f"method.name={method}", "optim.name=sgd", "ssps.enabled=true", "ssps.start_epoch=1",
        f"ssps.sampling={sampling}", "train.epochs=2",
    ]  # fmt: skip
    weights = []
    manifests = [
        toy_corpus / "train.tsv",
        _variant(toy_corpus, tmp_path, "speaker", "permuted"),
        _variant(toy_corpus, tmp_path, "speaker", "removed"),
        _variant(toy_corpus, tmp_path, "session", "removed"),
    ]
    for k, manifest in enumerate(manifests):
        cfg = tiny_cfg(toy_corpus, f"data.train_manifest={manifest}", *extra)
        weights.append(torch.load(train(cfg, tmp_path / f"run{k}"), weights_only=True)["embedder"])
    for other in weights[1:]:
        for key, value in weights[0].items():
            assert torch.equal(value, other[key]), key


FILTERS = {
    "mutual": ["ssps.mutual_neighbours=2"],
    "margin": ["ssps.margin_keep=0.5", "ssps.margin_rank=6"],
}


@pytest.mark.parametrize("column", ["speaker", "session"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_label_free_filters_read_neither_column(toy_corpus, tmp_path, column, name):
    extra = ["ssps.knn_neighbours=3", "ssps.exclude_same_channel=true", *FILTERS[name]]
    base = _draws(toy_corpus / "train.tsv", tmp_path / "a", "knn", extra)
    assert not all(bool(f.all()) for f in base[1::3])  # the filter leaves some anchors without a draw
    for how in ("permuted", "removed"):
        other = _draws(_variant(toy_corpus, tmp_path, column, how), tmp_path / how, "knn", extra)
        assert _same(base, other), f"{name}: draws changed with the {column} column {how}"


def test_the_oracle_filter_does_read_labels(toy_corpus, tmp_path):
    extra = ["ssps.knn_neighbours=5", "ssps.oracle_filter=true"]
    base = _draws(toy_corpus / "train.tsv", tmp_path / "a", "knn", extra)
    other = _draws(_variant(toy_corpus, tmp_path, "speaker", "permuted"), tmp_path / "b", "knn", extra)
    assert not _same(base, other)
