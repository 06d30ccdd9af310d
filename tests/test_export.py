"""ssps.export: the conv front end equals the STFT one; every registered encoder exported to TorchScript and
ONNX gives the PyTorch embeddings on three lengths and a batch; metadata; ``ssps export`` end to end."""

import json

import numpy as np
import pytest
import torch

from ssps.audio.features import LogMelFrontEnd
from ssps.checkpoint import load_embedder, save_checkpoint
from ssps.cli import main
from ssps.config import load_config
from ssps.embedder import Embedder
from ssps.encoders import ENCODERS
from ssps.errors import SSPSError
from ssps.export.frontend import ConvLogMel
from ssps.export.runtime import ExportedModel, exported_format
from ssps.utils.files import sha256

SR = 16000
LENGTHS = (1.3, 4.0, 9.7)  # seconds: frame counts with different remainders, and a long one
TOLERANCE = 1e-4  # on 1 - cosine
# Paper-size ECAPA (C = 1024) exports and runs slowly on CPU; the 512 model has the same graph.
SLOW = {"ecapa_tdnn"}
# The torch.export-based ONNX exporter takes ~15 s (TDNN) to ~80 s (thin ResNet-34) per model on this
# machine: the default set exports the TDNN, the slow set every encoder.
ONNX_DEFAULT = {"tdnn"}


def encoder_params(names, fast):
    return [pytest.param(n, marks=() if n in fast else pytest.mark.slow) for n in names]


def make_checkpoint(path, encoder: str, seed: int = 0):
    """A checkpoint whose BatchNorm statistics are not the identity, as after training."""
    torch.manual_seed(seed)
    cfg = load_config(overrides=[f"encoder.name={encoder}", "encoder.embed_dim=96"])
    embedder = Embedder(cfg)
    g = torch.Generator().manual_seed(seed)
    for m in embedder.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    save_checkpoint(path, cfg, embedder.state_dict(), epoch=3, step=30)
    return path


def waveforms(seconds: float, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """(batch, N) harmonic tones in noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    rows = [
        0.3 * np.sin(2 * np.pi * rng.uniform(90, 300) * t) + 0.05 * rng.standard_normal(len(t))
        for _ in range(batch)
    ]
    return torch.from_numpy(np.stack(rows).astype(np.float32))


def max_cosine_gap(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((1 - torch.nn.functional.cosine_similarity(a, b, dim=1)).abs().max())


def assert_parity(checkpoint, exported, from_features: bool = False) -> None:
    embedder, _ = load_embedder(checkpoint)
    model = ExportedModel(exported)
    inputs = [waveforms(s, seed=i) for i, s in enumerate(LENGTHS)] + [waveforms(4.0, batch=3, seed=7)]
    for wav in inputs:
        with torch.inference_mode():
            expected = embedder(wav)
            x = embedder.features(wav) if from_features else wav
            got = model(x)  # the exported graph alone
        assert got.shape == expected.shape
        assert max_cosine_gap(got, expected) < TOLERANCE, (tuple(wav.shape), max_cosine_gap(got, expected))
        # The runtime's own entry point (the front end is added for a features export).
        np.testing.assert_allclose(model.embed_waveforms(wav), got.numpy(), rtol=1e-4, atol=1e-5)


class Models:
    """Checkpoints and their exports (made through ``ssps export``), each built once per module."""

    def __init__(self, base):
        self.base = base

    def checkpoint(self, name: str):
        path = self.base / f"{name}.pt"
        return path if path.is_file() else make_checkpoint(path, name)

    def exported(self, name: str, format: str, from_features: bool = False):
        suffix = ".onnx" if format == "onnx" else ".jit.pt"
        out = self.base / f"{name}{'_features' if from_features else ''}{suffix}"
        if not out.is_file():
            argv = ["export", str(self.checkpoint(name)), "--out", str(out), "--format", format]
            assert main(argv + (["--from-features"] if from_features else [])) == 0
        return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    return Models(tmp_path_factory.mktemp("export"))


@pytest.mark.parametrize(
    "settings",
    [{}, {"window": "hann", "n_mels": 80}, {"n_fft": 400, "win_length": 400}, {"win_length": 320}],
)
@pytest.mark.parametrize("samples", [257, 16000, 16159, 20800, 155200])
def test_conv_front_end_equals_stft(settings, samples):
    reference = LogMelFrontEnd(**settings)
    wav = waveforms(samples / SR, batch=2)[:, :samples]
    expected = reference(wav)
    got = ConvLogMel(reference)(wav)
    assert got.shape == expected.shape == (2, 1 + samples // reference.hop_length, reference.n_mels)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=0)


@pytest.mark.parametrize("name", encoder_params(ENCODERS.names(), set(ENCODERS.names()) - SLOW))
def test_torchscript_matches_pytorch(models, name):
    out = models.exported(name, "torchscript")
    assert exported_format(out) == "torchscript" and exported_format(models.checkpoint(name)) is None
    assert_parity(models.checkpoint(name), out)


@pytest.mark.parametrize("name", encoder_params(ENCODERS.names(), ONNX_DEFAULT))
def test_onnx_matches_pytorch(models, name):
    assert_parity(models.checkpoint(name), models.exported(name, "onnx"))


@pytest.mark.parametrize("format", ["torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
def test_from_features_matches_pytorch(models, format):
    out = models.exported("tdnn", format, from_features=True)
    model = ExportedModel(out)
    assert model.input == "features" and model.metadata["min_length"] == "15"  # the TDNN's receptive field
    assert_parity(models.checkpoint("tdnn"), out, from_features=True)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_metadata_is_in_the_file(models, format):
    out = models.exported("tdnn", format)
    if format == "onnx":
        import onnx

        stored = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    else:
        extra = {"ssps.json": ""}
        torch.jit.load(str(out), _extra_files=extra)
        stored = json.loads(extra["ssps.json"])
    assert stored["sample_rate"] == "16000"
    assert stored["embedding_dim"] == "96"
    assert stored["source_checkpoint_sha256"] == sha256(models.checkpoint("tdnn"))
    assert stored["embedding_normalized"] == "false"
    assert json.loads(stored["config"])["encoder"]["name"] == "tdnn"
    assert ExportedModel(out).metadata == stored


def test_cli_export_says_what_it_wrote(models, tmp_path, capsys):
    out = tmp_path / "model.pt"  # the format comes from the suffix
    assert main(["export", str(models.checkpoint("tdnn")), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(torchscript)" in printed and "(batch, 96) raw, not L2-normalised" in printed
    assert "at least 2240 samples" in printed  # 15 frames of 160 samples: the TDNN's receptive field
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_verifier_and_cli_verify_accept_exported_models(models, format, tmp_path, capsys):
    import soundfile as sf

    import ssps

    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, waveforms(1.3, seed=1)[0].numpy(), SR)
    sf.write(b, waveforms(2.1, seed=2)[0].numpy(), SR)
    ckpt, exported = models.checkpoint("tdnn"), models.exported("tdnn", format)
    reference = ssps.Verifier.from_checkpoint(ckpt).score(a, b)
    assert abs(ssps.Verifier.from_checkpoint(exported).score(a, b) - reference) < 1e-4
    assert main(["verify", str(exported), str(a), str(b), "--threshold", "0.5"]) == 0
    assert abs(float(capsys.readouterr().out.split()[1]) - reference) < 1e-4


def test_bad_input_is_one_line_and_writes_nothing(models, tmp_path, capsys):
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("hello")
    out = tmp_path / "m.pt"
    assert main(["export", str(not_ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "notes.pt" in err
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    ckpt = models.checkpoint("tdnn")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "m.bin")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "gone.onnx"), str(ckpt), str(ckpt)]) == 2
    assert "exported model not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [not_ckpt]


def test_too_short_input_is_refused(models):
    model = ExportedModel(models.exported("tdnn", "torchscript"))
    with pytest.raises(SSPSError, match="at least 2240 samples"):
        model.embed_waveforms(np.zeros((1, 2000), np.float32))


def test_exporter_failure_is_one_line_and_leaves_no_file(models, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxscript")

    def broken_export(*args, **kwargs):
        raise RuntimeError("Failed to export the model\nwith a long traceback-like explanation")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    assert main(["export", str(models.checkpoint("tdnn")), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ssps export: error: ONNX export failed (Failed to export the model)"
    assert list(tmp_path.iterdir()) == []
