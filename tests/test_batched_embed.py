"""Padded batches embed like one utterance at a time: the front end and every encoder's pooling take the
valid lengths (within 1e-5), and ``embed_files`` batches mixed lengths."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from ssps.config import Config, EncoderConfig, FeaturesConfig
from ssps.embedder import Embedder
from ssps.encoders import ENCODERS

SR = 16000
WIDTH = {"tdnn": 32, "ecapa_tdnn": 16, "ecapa_tdnn_512": 16, "resnet34_thin": 4}


def embedder(name: str) -> Embedder:
    torch.manual_seed(0)
    cfg = Config(
        features=FeaturesConfig(n_mels=40),
        encoder=EncoderConfig(name=name, embed_dim=24, channels=WIDTH[name]),
    )
    model = Embedder(cfg)
    for m in model.modules():  # trained-looking BatchNorm statistics, so eval mode is not the identity
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_every_registered_encoder_is_covered():
    assert set(WIDTH) == set(ENCODERS.names())


def test_front_end_padded_rows_equal_rows_alone():
    model = embedder("tdnn")
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([16000, 9001, 4321, 12345])
    batch = torch.zeros(4, 16000)
    rows = [torch.randn(n, generator=g) for n in lengths.tolist()]
    for b, r in enumerate(rows):
        batch[b, : len(r)] = r
    feats = model.features(batch, lengths)
    for b, r in enumerate(rows):
        alone = model.features(r[None])[0]
        assert torch.allclose(feats[b, : len(alone)], alone, atol=1e-5)
        assert not feats[b, len(alone) :].any()


@pytest.mark.parametrize("name", sorted(WIDTH))
def test_padded_batch_embeds_like_one_at_a_time(name):
    model = embedder(name)
    g = torch.Generator().manual_seed(2)
    lengths = [24000, 23999, 17001, 9000, 5003]  # odd lengths exercise the ResNet's strided frames
    rows = [0.1 * torch.randn(n, generator=g) for n in lengths]
    batch = torch.zeros(len(rows), max(lengths))
    for b, r in enumerate(rows):
        batch[b, : len(r)] = r
    with torch.inference_mode():
        padded = model(batch, torch.tensor(lengths))
        alone = torch.cat([model(r[None]) for r in rows])
    scale = alone.abs().max()
    assert torch.allclose(padded, alone, atol=1e-5 * max(float(scale), 1.0)), (padded - alone).abs().max()


def test_embed_files_batches_mixed_lengths_like_one_at_a_time(tmp_path):
    from ssps.eval.embed import embed_files

    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate([1.0, 2.3, 0.7, 1.9, 2.3, 1.15, 3.0]):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
    ids = [p.stem for p in paths]
    model = embedder("ecapa_tdnn")
    _, batched = embed_files(model, paths, ids, batch_size=4, progress=False)
    _, single = embed_files(model, paths, ids, batch_size=1, progress=False)
    assert batched.shape == (7, 24)
    assert np.allclose(batched, single, atol=1e-5 * max(np.abs(single).max(), 1.0))
