"""Every registered encoder: shapes, gradients, eval-mode determinism, pinned sizes; and the poolings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssps.config import EncoderConfig
from ssps.encoders import ENCODERS, build_encoder
from ssps.encoders.pooling import AttentiveStatsPool, SelfAttentiveStatsPool, StatsPool, weighted_stats
from ssps.errors import SSPSError

torch.set_num_threads(1)

# Exact parameter counts at the factory defaults (embed_dim 512); (n_mels 40, n_mels 80).
PARAMS = {
    "tdnn": (290_688, 316_288),
    "resnet34_thin": (1_437_078, 1_437_078),
    "ecapa_tdnn_512": (7_075_008, 7_177_408),
    "ecapa_tdnn": (22_529_152, 22_733_952),
}

N_MELS = 40


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", params=ENCODERS.names())
def encoder(request):
    # Built once per name: ECAPA-1024 is 22 M parameters, so keep batches and T tiny below.
    torch.manual_seed(0)
    return request.param, ENCODERS.get(request.param)(n_mels=N_MELS)


def test_every_registered_encoder_is_pinned():
    assert sorted(PARAMS) == ENCODERS.names()


def test_parameter_count(encoder):
    name, model = encoder
    assert _count(model) == PARAMS[name][0]
    assert _count(ENCODERS.get(name)(n_mels=80)) == PARAMS[name][1]


@pytest.mark.parametrize("frames", [50, 77])
def test_output_shape(encoder, frames):
    _, model = encoder
    model.train()
    out = model(torch.randn(2, frames, N_MELS))
    assert type(out) is torch.Tensor
    assert out.shape == (2, 512) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_gradient_reaches_every_parameter(encoder):
    name, model = encoder
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    # A squared loss: a plain sum would be constant through a train-mode BatchNorm over the batch.
    model(torch.randn(3, 50, N_MELS)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{name}: no gradient on {missing}"


def test_eval_is_deterministic_and_per_item(encoder):
    _, model = encoder
    model.eval()
    torch.manual_seed(2)
    feats = torch.randn(3, 60, N_MELS)
    with torch.no_grad():
        batch = model(feats)
        torch.testing.assert_close(model(feats), batch, atol=0, rtol=0)
        for i in range(3):
            torch.testing.assert_close(model(feats[i : i + 1]), batch[i : i + 1], atol=1e-5, rtol=1e-4)
    # Changing one item leaves the others alone.
    other = feats.clone()
    other[0] = torch.randn(60, N_MELS)
    with torch.no_grad():
        torch.testing.assert_close(model(other)[1:], batch[1:], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["tdnn", "resnet34_thin", "ecapa_tdnn_512"])
def test_build_encoder_width_and_embed_dim(name):
    model = build_encoder(EncoderConfig(name=name, embed_dim=32, channels=8), n_mels=24).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 50, 24)).shape == (2, 32)
    assert _count(model) < _count(ENCODERS.get(name)(n_mels=24, embed_dim=32))


def test_bad_width_is_user_error():
    with pytest.raises(SSPSError, match="encoder.channels"):
        build_encoder(EncoderConfig(name="ecapa_tdnn", channels=100), n_mels=40)
    with pytest.raises(SSPSError, match="encoder.channels"):
        ENCODERS.get("tdnn")(n_mels=40, channels=-1)


# --- pooling -----------------------------------------------------------------------------------------


def test_weighted_stats_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 30))
    w = rng.random((2, 5, 30))
    w /= w.sum(-1, keepdims=True)
    mean = (w * x).sum(-1)
    std = np.sqrt((w * (x - mean[..., None]) ** 2).sum(-1))
    got = weighted_stats(torch.from_numpy(x), torch.from_numpy(w)).double().numpy()
    np.testing.assert_allclose(got, np.concatenate([mean, std], 1), atol=1e-6)


def test_stats_pool_is_mean_and_population_std():
    x = torch.randn(2, 6, 40)
    want = torch.cat([x.mean(-1), x.std(-1, correction=0)], dim=1)
    torch.testing.assert_close(StatsPool()(x), want, atol=1e-5, rtol=1e-5)


def test_attention_pools_reduce_to_stats_pool_with_flat_scores():
    x = torch.randn(2, 8, 25)
    asp = AttentiveStatsPool(8, attention_channels=4).eval()
    torch.nn.init.zeros_(asp.attention[-1].weight)
    torch.nn.init.zeros_(asp.attention[-1].bias)
    sap = SelfAttentiveStatsPool(8)
    torch.nn.init.zeros_(sap.context)
    torch.testing.assert_close(asp(x), StatsPool()(x))
    torch.testing.assert_close(sap(x), StatsPool()(x))


@pytest.mark.parametrize("global_context", [True, False])
def test_attention_pools_ignore_frame_order(global_context):
    x = torch.randn(2, 8, 25)
    perm = torch.randperm(25)
    asp = AttentiveStatsPool(8, attention_channels=4, global_context=global_context).eval()
    sap = SelfAttentiveStatsPool(8)
    for pool in (asp, sap):
        out = pool(x)
        assert out.shape == (2, 16)
        torch.testing.assert_close(pool(x[..., perm]), out, atol=1e-5, rtol=1e-5)
        # Non-trivial attention: the weighted mean differs from the plain one.
        assert not torch.allclose(out, StatsPool()(x), atol=1e-4)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_runs_under_bf16_autocast(name):
    # Narrow widths keep this cheap; the pooling statistics are computed in float32 inside.
    model = ENCODERS.get(name)(n_mels=N_MELS, embed_dim=16, channels=4 if name == "resnet34_thin" else 16)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(torch.randn(3, 60, N_MELS))
    assert out.shape == (3, 16) and torch.isfinite(out.float()).all()
    out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
