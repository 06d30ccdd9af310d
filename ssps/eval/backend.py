"""A label-free scoring back-end: whiten what augmentation moves (augmentation WCCN).

Cosine scoring weighs every direction of the embedding space alike, but a self-supervised model's
embeddings still move with the recording (room, microphone, noise). Within-class covariance normalisation
(WCCN, Hatch et al. 2006) whitens the within-speaker scatter, which needs speaker labels. Here every
training utterance is its own class: one random crop of it is embedded clean and ``views`` times through
the training augmentation, and the within-utterance covariance of those normalised embeddings (what
augmentation moves, not who speaks) is whitened instead. Only the audio of the manifest is read, never
its speaker or session column, so the back-end is label-free.

    y = (x / |x| - mean) @ W,   W = Sw^(-1/2), Sw's eigenvalues floored at ``floor`` x the largest

Trials are then scored by the cosine of the ``y`` (:func:`ssps.eval.score.score_trials`, AS-norm too).

File format (``.npz``, read with ``allow_pickle=False``)::

    mean    (D,)   float64  mean of the normalised clean crop embeddings
    matrix  (D, D) float64  W
    meta    ()     unicode  JSON: checkpoint sha256, manifest, utterances, views, crop seconds, floor, seed

>>> g = np.random.default_rng(0)
>>> clean = g.standard_normal((200, 3))
>>> nuisance = np.stack([clean] + [clean + [0, 0, 2.0] * g.standard_normal((200, 1)) for _ in range(4)])
>>> b = fit_wccn(nuisance, floor=1e-6)
>>> w = within_covariance(np.stack([normalise(v) for v in nuisance]))
>>> np.round(b.matrix.T @ w @ b.matrix, 6)[2, 2]  # the within-utterance scatter is whitened
np.float64(1.0)
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ssps.audio.io import load_audio
from ssps.errors import SSPSError
from ssps.eval.embed import Embeddings, embed_batch
from ssps.utils.files import atomic_path


def normalise(x: np.ndarray) -> np.ndarray:
    """(..., D) rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def within_covariance(views: np.ndarray) -> np.ndarray:
    """(V, N, D) V embeddings of each of N utterances -> (D, D) covariance around each utterance's mean."""
    d = views - views.mean(axis=0)
    return np.einsum("vnd,vne->de", d, d) / (views.shape[0] * views.shape[1])


def inverse_sqrt(cov: np.ndarray, floor: float) -> np.ndarray:
    """(D, D) symmetric PSD -> its inverse square root, eigenvalues floored at ``floor`` x the largest."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, floor * max(vals.max(), 1e-30))
    return (vecs / np.sqrt(vals)) @ vecs.T


@dataclass(frozen=True)
class Backend:
    """``apply(x)``: (N, D) raw embeddings -> (N, D) float32 back-end embeddings, scored by cosine."""

    mean: np.ndarray  # (D,)
    matrix: np.ndarray  # (D, D)
    meta: dict[str, Any] = field(default_factory=dict)

    def apply(self, x: np.ndarray, source: str = "embeddings") -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise SSPSError(
                f"{source}: the back-end is for {len(self.mean)}-d embeddings, got shape {x.shape}"
            )
        return ((normalise(x) - self.mean) @ self.matrix).astype(np.float32)

    def table(self, emb: Embeddings, source: str = "embeddings") -> Embeddings:
        """The same ids, back-end vectors."""
        return Embeddings(emb.ids, self.apply(emb.vectors, source), emb.meta)


def fit_wccn(views: np.ndarray, floor: float = 1e-3, meta: dict | None = None) -> Backend:
    """(V, N, D) raw embeddings, view 0 the clean one -> the augmentation-WCCN back-end."""
    views = np.asarray(views, dtype=np.float64)
    if views.ndim != 3 or views.shape[0] < 2 or views.shape[1] < 2:
        raise SSPSError(f"back-end: need (views >= 2, utterances >= 2, D) embeddings, got {views.shape}")
    if not 0 < floor < 1:
        raise SSPSError(f"back-end: floor={floor} must be a fraction in (0, 1)")
    v = normalise(views)
    return Backend(v[0].mean(axis=0), inverse_sqrt(within_covariance(v), floor), dict(meta or {}))


def random_crops(paths: Sequence[str | Path], seconds: float, rate: int, rng: np.random.Generator) -> list:
    """One random crop of ``seconds`` per file (a shorter file whole)."""
    n = int(round(seconds * rate))
    out = []
    for p in paths:
        wav = load_audio(p, sample_rate=rate)
        start = int(rng.integers(0, max(1, len(wav) - n + 1)))
        out.append(wav[start : start + n])
    return out


def _embed_all(embedder, wavs: list[np.ndarray], batch_size: int, device) -> np.ndarray:
    order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))  # equal lengths share a batch
    out = np.zeros((len(wavs), 0), dtype=np.float32)
    for s in range(0, len(order), batch_size):
        rows = order[s : s + batch_size]
        emb = embed_batch(embedder, [wavs[i] for i in rows], device)
        if out.shape[1] == 0:
            out = np.zeros((len(wavs), emb.shape[1]), dtype=np.float32)
        out[rows] = emb
    return out


def fit_backend(
    embedder: torch.nn.Module,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    paths: Sequence[str | Path],
    views: int = 4,
    crop_seconds: float = 3.0,
    floor: float = 1e-3,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    meta: dict | None = None,
) -> Backend:
    """Embed one crop of every file clean and ``views`` times augmented; fit :func:`fit_wccn` on them.

    Args:
        embedder: waveform (B, N) -> (B, D), in eval mode.
        augment: ``augment(wav, rng) -> wav`` (:class:`ssps.augment.compose.Augmenter`).
        paths: (N,) unlabelled training audio.
        views: augmented copies per crop (>= 1).
        crop_seconds: crop length.
        floor: eigenvalue floor of the inverse square root, relative to the largest.
        seed: the crops' and the augmentation's randomness.
    """
    if views < 1:
        raise SSPSError(f"back-end: views={views} must be >= 1")
    if len(paths) < 2:
        raise SSPSError(f"back-end: {len(paths)} file(s); need at least 2 utterances")
    if crop_seconds <= 0:
        raise SSPSError(f"back-end: crop_seconds={crop_seconds} must be > 0")
    rate = embedder.features.sample_rate
    rng = np.random.default_rng(seed)
    clean = random_crops(paths, crop_seconds, rate, rng)
    device = torch.device(device)
    embedder = embedder.to(device).eval()
    stack = [_embed_all(embedder, clean, batch_size, device)]
    for _ in tqdm(range(views), desc="back-end views", file=sys.stderr, disable=not progress):
        stack.append(_embed_all(embedder, [augment(w, rng) for w in clean], batch_size, device))
    info = {
        "utterances": len(paths),
        "views": views,
        "crop_seconds": crop_seconds,
        "floor": floor,
        "seed": seed,
    }
    return fit_wccn(np.stack(stack), floor, {**info, **(meta or {})})


def save_backend(path: str | Path, backend: Backend) -> None:
    """Write ``backend`` as one ``.npz``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            mean=backend.mean,
            matrix=backend.matrix,
            meta=np.array(json.dumps(backend.meta, sort_keys=True)),
        )


def load_backend(path: str | Path) -> Backend:
    """Read a file written by :func:`save_backend`."""
    path = Path(path)
    if not path.is_file():
        raise SSPSError(f"{path}: back-end file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            mean, matrix = np.asarray(data["mean"]), np.asarray(data["matrix"])
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except KeyError as e:
        raise SSPSError(f"{path}: not an ssps back-end file (no {e} array)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise SSPSError(f"{path}: cannot read the back-end ({str(e).splitlines()[0][:200]})") from None
    if mean.ndim != 1 or matrix.ndim != 2 or matrix.shape[0] != len(mean):
        raise SSPSError(f"{path}: mean {mean.shape} and matrix {matrix.shape} do not fit together")
    return Backend(mean, matrix, meta)


def backend_for(checkpoint: str | Path, embedder, cfg, manifest_path: str | Path, **kwargs) -> Backend:
    """Fit the back-end of ``checkpoint`` on the audio of ``manifest_path`` with the checkpoint's own
    training augmentation (``data.augment``); ``kwargs`` go to :func:`fit_backend`."""
    from ssps.augment.compose import Augmenter
    from ssps.data.manifest import read_manifest
    from ssps.utils.files import sha256

    if cfg.data.augment.strategy == "none":
        raise SSPSError(f"{checkpoint}: data.augment.strategy is 'none'; the back-end needs augmented views")
    manifest = read_manifest(manifest_path)
    paths = [manifest.resolve(i) for i in range(len(manifest))]  # audio only: no speaker, no session
    augment = Augmenter(
        cfg.data.augment, sample_rate=cfg.features.sample_rate, train_paths=paths, seed=kwargs.get("seed", 0)
    )
    meta = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256(checkpoint),
        "manifest": str(manifest_path),
    }
    return fit_backend(embedder, augment, paths, meta=meta, **kwargs)


def cmd_backend(args) -> int:
    from ssps.checkpoint import load_embedder
    from ssps.eval.commands import resolve_device

    device = resolve_device(args.device)
    embedder, cfg = load_embedder(args.checkpoint, device=device)
    backend = backend_for(
        args.checkpoint,
        embedder,
        cfg,
        args.manifest,
        views=args.views,
        crop_seconds=args.crop_seconds,
        floor=args.floor,
        seed=args.seed,
        batch_size=args.batch_size,
        device=device,
    )
    save_backend(args.out, backend)
    print(f"augmentation-WCCN back-end of {len(backend.mean)}-d embeddings, {args.views} views -> {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "backend", help="fit the label-free augmentation-WCCN scoring back-end on unlabelled training audio"
    )
    p.add_argument("checkpoint")
    p.add_argument("--manifest", required=True, help="training manifest (only its audio is read)")
    p.add_argument("--out", required=True, help="output .npz (for `ssps eval/score --backend`)")
    p.add_argument("--views", type=int, default=4, help="augmented copies of each crop (default 4)")
    p.add_argument("--crop-seconds", dest="crop_seconds", type=float, default=3.0)
    p.add_argument("--floor", type=float, default=1e-3, help="eigenvalue floor, relative to the largest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=cmd_backend)
