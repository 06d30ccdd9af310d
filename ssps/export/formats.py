"""Write a checkpoint's embedder as an ONNX or TorchScript file that carries its own metadata.

What is exported is :class:`ExportModel`: the embedder with the export-friendly front end.

Both formats take a float32 batch with dynamic batch and time axes and return (B, D) raw embeddings
(not L2-normalised: divide by the norm, or score with cosine, as ``ssps score`` does). Metadata
(:func:`export_metadata`) goes into the file: ONNX ``metadata_props``, TorchScript extra file
``ssps.json``; :mod:`ssps.export.runtime` needs nothing else to run the model.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import ssps
from ssps.checkpoint import load_embedder
from ssps.config import Config, to_dict
from ssps.errors import SSPSError
from ssps.export.frontend import ConvLogMel
from ssps.utils.files import atomic_path, sha256

FORMATS = ("onnx", "torchscript")
EXPORT_FORMAT = "ssps-export"
EXPORT_VERSION = 1
TORCHSCRIPT_EXTRA = "ssps.json"
EXAMPLE_SECONDS = 2.0  # length of the example input traced or exported; any length runs afterwards


class ExportModel(nn.Module):
    """An :class:`ssps.embedder.Embedder` with its front end swapped for :class:`ConvLogMel`.

    Args:
        embedder: the trained Embedder (front end + encoder), in eval mode.
        from_features: export the encoder alone, taking (B, T, n_mels) log-mel features.
    """

    def __init__(self, embedder: nn.Module, from_features: bool = False):
        super().__init__()
        self.features = None if from_features else ConvLogMel(embedder.features)
        self.encoder = embedder.encoder
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) waveforms (or (B, T, n_mels) features) -> (B, D) raw embeddings (not normalised)."""
        if self.features is not None:
            x = self.features(x)
        return self.encoder(x)


def min_input_length(model: ExportModel, cfg: Config) -> int:
    """Shortest input the exported graph accepts: samples (waveform input) or frames (features).

    The reflect padding needs more than n_fft // 2 samples; the TDNN needs ``min_frames`` frames.
    """
    frames = max(getattr(model.encoder, "min_frames", 1), 2)  # a 1-frame time axis would specialise
    if model.features is None:
        return frames
    f = cfg.features
    return max(f.n_fft // 2 + 1, (frames - 1) * f.hop_length)


def export_metadata(cfg: Config, checkpoint: Path, model: ExportModel, embed_dim: int) -> dict[str, str]:
    """String key/values (ONNX metadata_props can hold only strings); ``config`` is the resolved config."""
    input_kind = "features" if model.features is None else "waveform"
    return {
        "format": EXPORT_FORMAT,
        "version": str(EXPORT_VERSION),
        "input": input_kind,
        "input_shape": "(batch, frames, n_mels)" if input_kind == "features" else "(batch, samples)",
        "min_length": str(min_input_length(model, cfg)),
        "sample_rate": str(cfg.features.sample_rate),
        "n_mels": str(cfg.features.n_mels),
        "embedding_dim": str(embed_dim),
        "embedding_normalized": "false",
        "encoder": cfg.encoder.name,
        "method": cfg.method.name + ("+ssps" if cfg.ssps.enabled else ""),
        "source_checkpoint": checkpoint.name,
        "source_checkpoint_sha256": sha256(checkpoint),
        "ssps_version": ssps.__version__,
        "config": json.dumps(to_dict(cfg), sort_keys=True),
    }


def example_input(model: ExportModel, cfg: Config) -> torch.Tensor:
    """A batch of 2 (a batch of 1 could be specialised into the graph)."""
    samples = int(EXAMPLE_SECONDS * cfg.features.sample_rate)
    if model.features is None:
        return torch.randn(2, 1 + samples // cfg.features.hop_length, cfg.features.n_mels)
    return 0.1 * torch.randn(2, samples)


def write_torchscript(model: nn.Module, example: torch.Tensor, meta: dict[str, str], out: Path) -> None:
    # Tracing, not scripting: the encoders use Python constructs TorchScript cannot compile. Sizes
    # (batch, time) are recorded as graph values, so other lengths run; the parity tests check it.
    with warnings.catch_warnings():
        # torch.jit is deprecated in torch >= 2.10 but remains the format C++ (libtorch) loads; the
        # TracerWarnings are the encoders' input-length checks, which the runtime does instead.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        with atomic_path(out) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(meta)})


def write_onnx(model: nn.Module, example: torch.Tensor, meta: dict[str, str], out: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it; fail here with a clear message)
    except ImportError:
        raise SSPSError("ONNX export needs onnx and onnxscript: pip install 'ssps[export]'") from None
    input_name = "features" if meta["input"] == "features" else "waveform"
    time_axis = torch.export.Dim(
        "frames" if input_name == "features" else "samples", min=int(meta["min_length"])
    )
    # The exporter logs a warning per torchvision op it cannot register and warns about its own
    # deprecated internals: neither concerns this model, so keep them off the user's terminal.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=[input_name],
                output_names=["embedding"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch"), 1: time_axis}},
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; the first line names the failing op
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise SSPSError(f"ONNX export failed ({first})") from None
    finally:
        registration_log.setLevel(level)
    program.model.metadata_props.update(meta)
    with atomic_path(out) as tmp:
        program.save(str(tmp), external_data=False)


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, format: str, from_features: bool = False
) -> dict[str, str]:
    """Export any ssps checkpoint's embedder.

    Args:
        checkpoint: training, epoch or averaged checkpoint.
        out: output file, written atomically.
        format: "onnx" or "torchscript".
        from_features: export the encoder alone, from (B, T, n_mels) log-mel features.

    Returns:
        The metadata written into the file.
    """
    if format not in FORMATS:
        raise SSPSError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    checkpoint, out = Path(checkpoint), Path(out)
    embedder, cfg = load_embedder(checkpoint)
    model = ExportModel(embedder, from_features=from_features)
    example = example_input(model, cfg)
    with torch.no_grad():
        embed_dim = model(example).shape[1]
    meta = export_metadata(cfg, checkpoint, model, embed_dim)
    writer = write_onnx if format == "onnx" else write_torchscript
    try:
        writer(model, example, meta, out)
    except OSError as e:
        raise SSPSError(f"{out}: cannot write ({e.strerror or e})") from None
    return meta


def describe(meta: dict[str, Any]) -> str:
    """One line: what the exported model takes and returns."""
    shape = meta["input_shape"]
    return (
        f"input {meta['input']} {shape} float32 at {meta['sample_rate']} Hz (at least {meta['min_length']} "
        f"{'frames' if meta['input'] == 'features' else 'samples'}), output embedding "
        f"(batch, {meta['embedding_dim']}) raw, not L2-normalised"
    )
