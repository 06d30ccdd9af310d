"""Run an exported model (ONNX with onnxruntime, TorchScript with torch.jit) from its file alone.

Example::

    model = ExportedModel("tdnn.onnx")
    emb = model.embed_waveforms(wav[None])  # (1, N) float32 at model.sample_rate -> (1, D), not normalised
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssps.audio.features import LogMelFrontEnd
from ssps.config import config_from_dict
from ssps.errors import SSPSError
from ssps.export.formats import EXPORT_FORMAT, EXPORT_VERSION, TORCHSCRIPT_EXTRA


def exported_format(path: str | Path) -> str | None:
    """The exported format of ``path``, or None (e.g. a checkpoint).

    "onnx" by the suffix; "torchscript" for a zip archive that holds ssps export metadata.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        return "onnx"
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            extra = f"/extra/{TORCHSCRIPT_EXTRA}"
            return "torchscript" if any(n.endswith(extra) for n in z.namelist()) else None
    return None


class ExportedModel:
    """An exported ssps model; :meth:`embed_waveforms` runs it (a features export gets its front end here).

    Args:
        path: the ``.onnx`` or TorchScript file.
        device: TorchScript only (onnxruntime runs on CPU here).
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.path = Path(path)
        self.format = exported_format(self.path)
        self.device = torch.device(device)
        if not self.path.is_file():
            raise SSPSError(f"{self.path}: exported model not found")
        if self.format == "onnx":
            self._run, self.metadata = _load_onnx(self.path, self.device)
        elif self.format == "torchscript":
            self._run, self.metadata = _load_torchscript(self.path, self.device)
        else:
            raise SSPSError(f"{self.path}: not an ssps-exported ONNX or TorchScript model")
        m = self.metadata
        if m.get("format") != EXPORT_FORMAT or m.get("version") != str(EXPORT_VERSION):
            raise SSPSError(f"{self.path}: no ssps export metadata of version {EXPORT_VERSION}")
        self.input = m["input"]
        self.sample_rate = int(m["sample_rate"])
        self.embedding_dim = int(m["embedding_dim"])
        self.config = config_from_dict(json.loads(m["config"]))
        self.front_end = None
        self.min_samples = int(m["min_length"])
        if self.input == "features":
            self.front_end = LogMelFrontEnd.from_config(self.config.features)
            # The front end needs > n_fft // 2 samples, the encoder min_length frames.
            hop = self.config.features.hop_length
            self.min_samples = max(self.config.features.n_fft // 2 + 1, (self.min_samples - 1) * hop)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The exported graph as it is: (B, N) waveforms or (B, T, n_mels) features -> (B, D)."""
        return self._run(x)

    @torch.inference_mode()
    def embed_waveforms(self, wav: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, N) float32 samples at ``sample_rate`` -> (B, D) float32 raw embeddings."""
        x = torch.as_tensor(wav, dtype=torch.float32)
        if x.dim() != 2 or x.shape[1] < self.min_samples:
            raise SSPSError(
                f"{self.path.name}: expected a (batch, samples) waveform batch of at least "
                f"{self.min_samples} samples, got shape {tuple(x.shape)}"
            )
        if self.front_end is not None:
            x = self.front_end(x)
        return self._run(x).float().cpu().numpy()


def _load_onnx(path: Path, device: torch.device) -> tuple[Any, dict[str, str]]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise SSPSError(
            f"{path}: running ONNX models needs onnxruntime: pip install 'ssps[export]'"
        ) from None
    if device.type != "cpu":
        raise SSPSError(f"{path}: ONNX models run on the CPU here (onnxruntime CPU build); use --device cpu")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same thread budget as torch
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for malformed files
        raise SSPSError(f"{path}: cannot load ONNX model ({str(e).strip().splitlines()[0][:200]})") from None
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        feed = {input_name: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
        return torch.from_numpy(session.run(None, feed)[0])

    return run, dict(session.get_modelmeta().custom_metadata_map)


def _load_torchscript(path: Path, device: torch.device) -> tuple[Any, dict[str, str]]:
    extra = {TORCHSCRIPT_EXTRA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still loads
        try:
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except RuntimeError as e:
            raise SSPSError(
                f"{path}: cannot load TorchScript model ({str(e).splitlines()[0][:200]})"
            ) from None
    module.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        return module(x.to(device))

    try:
        return run, json.loads(extra[TORCHSCRIPT_EXTRA])
    except json.JSONDecodeError:
        raise SSPSError(f"{path}: unreadable {TORCHSCRIPT_EXTRA} metadata") from None
