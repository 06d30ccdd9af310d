"""Full-utterance embeddings, and the ``.npz`` file that carries them to scoring.

Evaluation embeds each utterance whole. Files are sorted by duration and up to ``batch_size`` neighbours
share a batch, zero-padded to the longest, with their lengths: the front end normalises each row over its
own frames and every encoder masks the padding before each convolution and in its pooling
(:class:`ssps.embedder.Embedder`), so an utterance's embedding equals its embedding alone within float
rounding (1e-5; tests/test_batched_embed.py). A model whose ``forward`` takes no ``lengths`` (an
exported one) batches only utterances of exactly the same number of samples, as before.

File format (``np.load(allow_pickle=False)`` reads it)::

    ids         (N,) unicode   utterance ids
    embeddings  (N, D) float32 raw encoder outputs (not normalised)
    meta        ()  unicode    JSON: checkpoint sha256, config, ...
"""

from __future__ import annotations

import inspect
import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ssps.audio.io import audio_duration, load_audio
from ssps.errors import SSPSError
from ssps.utils.files import atomic_path


@dataclass(frozen=True)
class Embeddings:
    """Embeddings with their utterance ids; ``row(id)`` finds one."""

    ids: list[str]
    vectors: np.ndarray  # (N, D) float32
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vectors", np.asarray(self.vectors, dtype=np.float32))
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.ids):
            raise SSPSError(f"{len(self.ids)} ids but embeddings of shape {self.vectors.shape}")
        index = {u: i for i, u in enumerate(self.ids)}
        if len(index) != len(self.ids):
            raise SSPSError("duplicate utterance ids in embeddings")
        object.__setattr__(self, "_index", index)

    def rows(self, ids: Sequence[str], source: str = "trials") -> np.ndarray:
        """(len(ids),) int64 row numbers; SSPSError naming the count and first 5 ids that are absent."""
        index = self._index
        missing = [u for u in dict.fromkeys(ids) if u not in index]
        if missing:
            shown = ", ".join(missing[:5])
            raise SSPSError(f"{source}: {len(missing)} utterance(s) have no embedding, e.g. {shown}")
        return np.fromiter((index[u] for u in ids), dtype=np.int64, count=len(ids))


@torch.inference_mode()
def embed_batch(embedder: nn.Module, wavs: list[np.ndarray], device: torch.device) -> np.ndarray:
    """B waveforms -> (B, D) float32 raw embeddings; unequal lengths go padded, with their lengths."""
    if all(len(w) == len(wavs[0]) for w in wavs):
        x = torch.from_numpy(np.stack(wavs)).to(device)  # (B, N)
        return embedder(x).float().cpu().numpy()  # (B, D)
    lengths = torch.tensor([len(w) for w in wavs])
    x = torch.zeros(len(wavs), int(lengths.max()))
    for b, w in enumerate(wavs):
        x[b, : len(w)] = torch.from_numpy(w)
    return embedder(x.to(device), lengths.to(device)).float().cpu().numpy()  # (B, D)


def takes_lengths(embedder: nn.Module) -> bool:
    """Whether ``embedder(wav, lengths)`` embeds a zero-padded batch row by row (ssps.embedder.Embedder)."""
    try:
        return "lengths" in inspect.signature(embedder.forward).parameters
    except (TypeError, ValueError):
        return False


def embed_files(
    embedder: nn.Module,
    paths: Sequence[str | Path],
    ids: Sequence[str],
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    sample_rate: int = 16000,
    progress: bool = True,
) -> tuple[list[str], np.ndarray]:
    """Embed whole utterances.

    Args:
        embedder: waveform (B, N) -> (B, D) model (put in eval mode here and moved to ``device``).
        paths: (N,) audio files.
        ids: (N,) utterance ids, one per path.
        batch_size: most utterances per forward pass (neighbours in duration order, padded; without
            ``lengths`` support only equal-length ones).
        device: where the model runs.
        sample_rate: rate the files are resampled to (the model's front-end rate).
        progress: show a tqdm bar on stderr.

    Returns:
        ids: (N,) in the input order.
        embeddings: (N, D) float32, raw (not normalised).
    """
    if len(paths) != len(ids):
        raise SSPSError(f"{len(paths)} paths but {len(ids)} ids")
    if batch_size < 1:
        raise SSPSError(f"batch size must be >= 1, got {batch_size}")
    if not paths:
        raise SSPSError("no audio files to embed")
    device = torch.device(device)
    embedder = embedder.to(device).eval()
    min_samples = getattr(getattr(embedder, "features", None), "n_fft", 0) // 2 + 1
    # Sorting by duration makes equal-length utterances neighbours; the header read is cheap.
    order = sorted(range(len(paths)), key=lambda i: audio_duration(paths[i]))
    pad = takes_lengths(embedder)
    out: list[np.ndarray | None] = [None] * len(paths)
    batch: list[int] = []
    wavs: list[np.ndarray] = []

    def flush() -> None:
        try:
            emb = embed_batch(embedder, wavs, device)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise SSPSError(f"{paths[batch[0]]}: the model failed on this utterance ({first})") from None
        for j, i in enumerate(batch):
            out[i] = emb[j]
        batch.clear()
        wavs.clear()

    for i in tqdm(order, desc="embed", unit="utt", file=sys.stderr, disable=not progress):
        wav = load_audio(paths[i], sample_rate=sample_rate)
        if len(wav) < min_samples:
            raise SSPSError(f"{paths[i]}: {len(wav)} samples, too short to embed (need {min_samples})")
        if wavs and ((not pad and len(wav) != len(wavs[0])) or len(wavs) == batch_size):
            flush()
        batch.append(i)
        wavs.append(wav)
    flush()
    return list(ids), np.stack(out).astype(np.float32)


def save_embeddings(
    path: str | Path, ids: Sequence[str], embeddings: np.ndarray, meta: dict[str, Any]
) -> None:
    """Write ids, (N, D) float32 embeddings and JSON ``meta`` as one ``.npz``, atomically."""
    Embeddings(list(ids), np.asarray(embeddings))  # validates shapes and duplicate ids
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # Through a file object: np.savez would append ".npz" to a bare temporary name.
        np.savez(
            f,
            ids=np.array(list(ids), dtype=np.str_),
            embeddings=np.asarray(embeddings, dtype=np.float32),
            meta=np.array(json.dumps(meta, sort_keys=True)),
        )


def load_embeddings(path: str | Path) -> Embeddings:
    """Read a file written by :func:`save_embeddings`."""
    path = Path(path)
    if not path.is_file():
        raise SSPSError(f"{path}: embeddings file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            ids = [str(u) for u in data["ids"]]
            vectors = np.asarray(data["embeddings"], dtype=np.float32)
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except KeyError as e:
        raise SSPSError(f"{path}: not an ssps embeddings file (no {e} array)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise SSPSError(f"{path}: cannot read embeddings ({str(e).splitlines()[0][:200]})") from None
    try:
        return Embeddings(ids, vectors, meta)
    except SSPSError as e:
        raise SSPSError(f"{path}: {e}") from None
