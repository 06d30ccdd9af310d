"""``ssps pseudo-label``: a checkpoint and a training manifest -> a manifest of pseudo-speakers.

Stages, each a file in ``OUT``:

- ``embeddings.npz``: full-utterance embeddings of every row (:mod:`ssps.eval.embed`); reused when present
  and made by the same checkpoint, so a re-run with other clustering settings does not embed again.
- ``train.tsv``: the input rows (absolute paths) whose ``speaker`` column is the pseudo-speaker
  (``pseudo00000``, the largest first); the true speaker, when the input had one, is kept in the extra
  column ``true_speaker`` for diagnostics; no ssps code reads it.
  With ``keep`` < 1 only each pseudo-speaker's most typical utterances (closest to its mean embedding) are
  written.
- ``quality.json`` (written last): the number of pseudo-speakers, how it was chosen, and, when the input
  has speakers, NMI, purity and pairwise precision / recall against them (:mod:`ssps.pseudo.quality`).

The clustering never reads the speaker column. With ``session_metadata`` it reads the session column
(recording ids, not speaker labels): the mean embedding of each recording is clustered, and every
utterance takes its recording's pseudo-speaker. ``channel_groups`` does the same label-free: groups of
utterances with alike channel fingerprints (audio only) stand in for the recordings.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ssps.data.manifest import Manifest, Utterance, read_manifest, write_manifest
from ssps.errors import SSPSError
from ssps.eval.embed import embed_files, load_embeddings, save_embeddings
from ssps.pseudo.cluster import PseudoLabelConfig, normalise, pseudo_labels
from ssps.pseudo.quality import cluster_quality
from ssps.utils.files import atomic_write_text, sha256

log = logging.getLogger("ssps")


def _embeddings(checkpoint: Path, manifest: Manifest, out: Path, device, batch_size: int) -> np.ndarray:
    from ssps.checkpoint import load_embedder

    path = out / "embeddings.npz"
    ids = [r.utterance for r in manifest.rows]
    digest = sha256(checkpoint)
    if path.is_file():
        emb = load_embeddings(path)
        if emb.meta.get("checkpoint_sha256") == digest and set(emb.ids) == set(ids):
            log.info("reusing %s", path)
            return emb.vectors[emb.rows(ids, str(path))]
    embedder, _ = load_embedder(checkpoint, device=device)
    paths = [manifest.resolve(i) for i in range(len(manifest))]
    ids, vectors = embed_files(embedder, paths, ids, batch_size, device, embedder.features.sample_rate)
    save_embeddings(path, ids, vectors, {"checkpoint": str(checkpoint), "checkpoint_sha256": digest})
    return vectors


def _wccn(checkpoint: Path, manifest_path, out: Path, vectors: np.ndarray, cfg, device) -> np.ndarray:
    """The embeddings through the augmentation-WCCN back-end fitted on the manifest's audio (backend.npz)."""
    from ssps.checkpoint import load_embedder
    from ssps.eval.backend import backend_for, save_backend

    embedder, model_cfg = load_embedder(checkpoint, device=device)
    backend = backend_for(
        checkpoint, embedder, model_cfg, manifest_path, views=cfg.wccn_views, seed=cfg.seed, device=device
    )
    save_backend(out / "backend.npz", backend)
    return backend.apply(vectors, str(out / "embeddings.npz"))


def _sample_rate(checkpoint: Path) -> int:
    """The sample rate the checkpoint's front end reads audio at."""
    from ssps.checkpoint import checkpoint_config, load_checkpoint

    return checkpoint_config(load_checkpoint(checkpoint), checkpoint).features.sample_rate


def _with_pitch(checkpoint: Path, manifest: Manifest, vectors: np.ndarray, weight: float):
    """The embeddings with each utterance's median F0 mixed in (ssps/pseudo/prosody.py), and how many
    utterances had no voiced frame."""
    from ssps.pseudo.prosody import mix_pitch, utterance_pitch

    pitch = utterance_pitch([manifest.resolve(i) for i in range(len(manifest))], _sample_rate(checkpoint))
    try:
        return mix_pitch(vectors, pitch, weight), int(np.isnan(pitch).sum())
    except SSPSError as e:
        raise SSPSError(f"{manifest.source}: {e}") from None


def _pool_sessions(manifest: Manifest, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) utterance embeddings -> (R, D) normalised mean per recording and the (N,) recording of each."""
    if not manifest.has_sessions:
        raise SSPSError(
            f"{manifest.source}: session_metadata needs a session on every row (column 'session')"
        )
    _, codes = manifest.labels("session")
    codes = np.asarray(codes)
    return _pool(vectors, codes), codes


def _pool(vectors: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(N, D) embeddings and (N,) group codes 0..G-1 -> (G, D) sums of the normalised rows."""
    return _group_sums(normalise(vectors), codes).astype(np.float32)


def _group_sums(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(N, D) rows and (N,) group codes 0..G-1 -> (G, D) float64 sums per group."""
    sums = np.zeros((codes.max() + 1, x.shape[1]), dtype=np.float64)
    np.add.at(sums, codes, x)
    return sums


def channel_groups(manifest: Manifest, groups: int, seed: int, sample_rate: int) -> np.ndarray:
    """(N,) label-free recording stand-ins: spherical k-means of each whole utterance's channel fingerprint
    (:mod:`ssps.sampling.channel`: log-mel mean and spread per band, z-scored over the set) into ``groups``
    groups, numbered 0..G-1 (empty ones dropped). Reads the audio only."""
    import torch

    from ssps.audio.io import load_audio
    from ssps.sampling.channel import channel_statistics, fingerprint_keys
    from ssps.sampling.kmeans import spherical_kmeans

    if not 2 <= groups <= len(manifest):
        raise SSPSError(
            f"{manifest.source}: channel_groups={groups} must be between 2 and the {len(manifest)} utterances"
        )
    stats = torch.cat(
        [
            channel_statistics(
                torch.from_numpy(load_audio(manifest.resolve(i), sample_rate))[None], sample_rate
            )
            for i in range(len(manifest))
        ]
    )
    km = spherical_kmeans(fingerprint_keys(stats), groups, iterations=20, seed=seed)
    return np.unique(km.assignments.numpy(), return_inverse=True)[1]


def typical(vectors: np.ndarray, labels: np.ndarray, keep: float) -> np.ndarray:
    """(N,) bool: per label, the ``ceil(keep * size)`` rows of highest cosine to the label's mean direction
    (at least one per label; all when ``keep`` is 1). Ties go to the earlier row."""
    if keep >= 1:
        return np.ones(len(labels), dtype=bool)
    x = normalise(vectors)
    centres = _group_sums(x, labels)
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    score = np.einsum("nd,nd->n", x, centres[labels])
    kept = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        best = members[np.argsort(-score[members], kind="stable")]
        kept[best[: int(np.ceil(keep * len(members)))]] = True
    return kept


def pseudo_label(
    checkpoint: str | Path,
    manifest_path: str | Path,
    out_dir: str | Path,
    cfg: PseudoLabelConfig,
    device: str = "cpu",
    batch_size: int = 32,
) -> dict:
    """Embed, cluster and write ``OUT/train.tsv`` and ``OUT/quality.json``; returns the quality dict."""
    out, checkpoint = Path(out_dir), Path(checkpoint)
    if not 0 < cfg.keep <= 1:
        raise SSPSError(f"pseudo-label: keep={cfg.keep} must be a fraction in (0, 1]")
    if not 0 <= cfg.pitch < 1:  # checked before the embedding, not after it
        raise SSPSError(f"pseudo-label: pitch={cfg.pitch} must be a weight in [0, 1)")
    manifest = read_manifest(manifest_path)
    n = len(manifest)
    k = cfg.clusters
    if k and not 2 <= k <= n:
        raise SSPSError(f"{manifest_path}: clusters={k} is more than the {n} utterances (or below 2)")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vectors = _embeddings(checkpoint, manifest, out, device, batch_size)
    if cfg.wccn:
        vectors = _wccn(checkpoint, manifest_path, out, vectors, cfg, device)
    unvoiced = None
    if cfg.pitch:
        vectors, unvoiced = _with_pitch(checkpoint, manifest, vectors, cfg.pitch)
    t_embed = time.perf_counter() - t0
    items, of_row = vectors, np.arange(n)
    if cfg.session_metadata and cfg.channel_groups:
        raise SSPSError(f"{manifest_path}: session_metadata and channel_groups are alternatives; set one")
    if cfg.session_metadata:
        items, of_row = _pool_sessions(manifest, vectors)
        if k > len(items):
            raise SSPSError(f"{manifest_path}: clusters={k} is more than the {len(items)} recordings")
    groups = None
    if cfg.channel_groups:
        groups = channel_groups(manifest, cfg.channel_groups, cfg.seed, _sample_rate(checkpoint))
        items, of_row = _pool(vectors, groups), groups
        if k > len(items):
            raise SSPSError(f"{manifest_path}: clusters={k} is more than the {len(items)} channel groups")
    t0 = time.perf_counter()
    try:
        result = pseudo_labels(items, cfg, device=device)
    except SSPSError as e:
        raise SSPSError(f"{manifest_path}: {e}") from None
    labels = result.labels[of_row]
    names = [f"pseudo{i:05d}" for i in labels]
    kept = typical(vectors, labels, cfg.keep)
    rows = [
        Utterance(r.utterance, str(manifest.resolve(i).resolve()), names[i], r.session, r.duration)
        for i, r in enumerate(manifest.rows)
        if kept[i]
    ]
    extra = (
        {"true_speaker": [r.speaker for r, k in zip(manifest.rows, kept, strict=True) if k]}
        if manifest.has_speakers
        else None
    )
    write_manifest(out / "train.tsv", rows, extra)
    report = {
        "checkpoint": str(checkpoint),
        "manifest": str(manifest_path),
        "utterances": n,
        "num_pseudo_speakers": result.num_speakers,
        "kept": int(kept.sum()),
        **({"unvoiced": unvoiced} if unvoiced is not None else {}),
        "selection": result.selection,
        "settings": asdict(cfg),
        "seconds": {"embed": round(t_embed, 2), "cluster": round(time.perf_counter() - t0, 2)},
    }
    if manifest.has_speakers:  # diagnostics only: nothing above read the speaker column
        speakers = np.array([r.speaker for r in manifest.rows])
        report["quality"] = cluster_quality(labels, speakers)
        if not kept.all():  # the rows the supervised stage trains on
            report["quality_kept"] = cluster_quality(labels[kept], speakers[kept])
        report["quality_kmeans"] = cluster_quality(result.fine[of_row], speakers)
    if groups is not None and manifest.has_sessions:  # diagnostic: how well the groups find recordings
        report["quality_channel_groups"] = cluster_quality(
            groups, np.array([r.session for r in manifest.rows])
        )
    atomic_write_text(out / "quality.json", json.dumps(report, indent=2) + "\n")
    return report


def settings_from_args(args, base: PseudoLabelConfig | None = None) -> PseudoLabelConfig:
    """The command-line flags that were given, over ``base`` (default: the defaults)."""
    cfg = base or PseudoLabelConfig()
    given = {k: v for k, v in vars(args).items() if k in asdict(cfg) and v is not None}
    return replace(cfg, **given)
