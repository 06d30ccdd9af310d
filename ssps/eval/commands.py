"""``ssps embed | score | metrics | eval | verify``: the evaluation stages, file to file.

``evaluate`` runs all of them in one call, for ``ssps eval`` and for validation during training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ssps.config import to_dict
from ssps.data.trials import check_files, check_paths, read_trials, resolve_files
from ssps.errors import SSPSError
from ssps.eval import metrics
from ssps.eval.backend import load_backend
from ssps.eval.embed import Embeddings, embed_files, load_embeddings, save_embeddings
from ssps.eval.score import read_scores, score_trials, write_scores
from ssps.utils.files import atomic_write_text, sha256


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None) = CUDA when available, else CPU; SSPSError for an unusable device name."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SSPSError(f"--device: unknown device {name!r} (expected auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SSPSError(f"--device: {name!r} requested but CUDA is not available")
    return device


def _load(checkpoint: str | Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    from ssps.checkpoint import load_embedder

    embedder, cfg = load_embedder(checkpoint, device=device)
    meta = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256(checkpoint), "config": to_dict(cfg)}
    return embedder, meta


def compute_metrics(scores: np.ndarray, labels: np.ndarray, trials_sha256: str | None) -> dict[str, Any]:
    """The numbers every result file reports; p_target is part of each minDCF key."""
    return {
        "eer": metrics.eer(scores, labels),
        "min_dcf_0.01": metrics.min_dcf(scores, labels, p_target=0.01),
        "min_dcf_0.05": metrics.min_dcf(scores, labels, p_target=0.05),
        "threshold_eer": metrics.eer_threshold(scores, labels),
        "n_trials": int(len(labels)),
        "n_target": int(np.sum(labels)),
        "n_nontarget": int(len(labels) - np.sum(labels)),
        "trials_sha256": trials_sha256,
    }


def summary_line(r: dict[str, Any]) -> str:
    sha = (r.get("trials_sha256") or "unknown")[:12]
    return (
        f"EER {100 * r['eer']:.3f}% | minDCF(p=0.01) {r['min_dcf_0.01']:.4f} | "
        f"minDCF(p=0.05) {r['min_dcf_0.05']:.4f} | {r['n_trials']} trials "
        f"({r['n_target']} target, {r['n_nontarget']} non-target) | trials sha256 {sha}"
    )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def evaluate(
    checkpoint_or_embedder: str | Path | nn.Module,
    trials_path: str | Path,
    root: str | Path,
    out_dir: str | Path | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    cohort: str | Path | None = None,
    top_k: int = 300,
    max_trials: int = 0,
    progress: bool = True,
    backend: str | Path | None = None,
) -> dict[str, Any]:
    """Embed the files a trial list names, score the trials, compute the metrics.

    Args:
        checkpoint_or_embedder: a checkpoint path, or an in-memory Embedder (its train/eval mode and
            device are restored afterwards).
        trials_path: VoxCeleb- or Kaldi-format trial list.
        root: folder the trial ids are relative to.
        out_dir: if given, write embeddings.npz, scores.txt, det.png and results.json there; nothing is
            written unless every stage succeeds.
        batch_size: most equal-length utterances per forward pass.
        device: ``auto``/None (checkpoint: CUDA if available; embedder: where it already is), cpu, cuda.
        cohort: embeddings file for AS-norm, or None.
        top_k: AS-norm cohort size per utterance.
        max_trials: if > 0, a fixed random subset (seed 0) of this many trials, for quick validation.
        progress: show a progress bar while embedding.
        backend: a back-end file (``ssps backend``): embeddings and cohort go through it before scoring.

    Returns:
        The metrics dict (see :func:`compute_metrics`), plus the trial list path and checkpoint checksum.
    """
    trials = read_trials(trials_path)
    if 0 < max_trials < len(trials):
        trials = trials.subset(
            np.sort(np.random.default_rng(0).choice(len(trials), max_trials, replace=False))
        )
    check_files(trials, root)  # before loading anything heavy
    cohort_emb = load_embeddings(cohort) if cohort else None
    back = load_backend(backend) if backend else None
    if isinstance(checkpoint_or_embedder, nn.Module):
        embedder = checkpoint_or_embedder
        dev = next(embedder.parameters()).device if device in (None, "auto") else resolve_device(device)
        meta: dict[str, Any] = {"checkpoint": None, "checkpoint_sha256": None}
    else:
        dev = resolve_device(device)
        embedder, meta = _load(checkpoint_or_embedder, dev)
    ids, paths = resolve_files(trials, root)
    # An in-memory model from the trainer goes back to its own device and mode afterwards.
    was_training, home = embedder.training, next(embedder.parameters()).device
    try:
        ids, vectors = embed_files(
            embedder, paths, ids, batch_size, dev, embedder.features.sample_rate, progress=progress
        )
    finally:
        embedder.to(home).train(was_training)
    emb = Embeddings(ids, vectors, meta)
    scores = _score(emb, trials, cohort_emb, top_k, back, cohort)
    results = compute_metrics(scores, trials.labels, trials.sha256)
    results.update(trials=str(trials.path), checkpoint_sha256=meta["checkpoint_sha256"])
    if back is not None:
        results["backend_sha256"] = sha256(backend)
    if cohort:
        results["as_norm_top_k"] = top_k
    if out_dir is not None:
        from ssps.eval.report import plot_det

        out = Path(out_dir)
        header = {"as_norm_top_k": str(top_k)} if cohort else {}
        plot_det(scores, trials.labels, out / "det.png", title=Path(trials.path).name)
        save_embeddings(out / "embeddings.npz", ids, vectors, meta)
        write_scores(out / "scores.txt", trials, scores, header)
        _write_json(out / "results.json", results)  # last: its presence means the run finished
    return results


def _score(emb, trials, cohort, top_k: int, backend, cohort_path=None) -> np.ndarray:
    if backend is not None:
        emb = backend.table(emb, "trial embeddings")
        cohort = backend.table(cohort, str(cohort_path)) if cohort is not None else None
    return score_trials(emb, trials, cohort, top_k)


def cmd_embed(args: argparse.Namespace) -> int:
    if bool(args.manifest) == bool(args.wavs):
        raise SSPSError("give either --manifest or WAV files, not both and not neither")
    if args.manifest:
        from ssps.data.manifest import read_manifest

        manifest = read_manifest(args.manifest)
        ids = [r.utterance for r in manifest.rows]
        paths = [manifest.resolve(i) for i in range(len(manifest))]
        source = str(args.manifest)
    else:
        if len(set(args.wavs)) != len(args.wavs):
            raise SSPSError("the same WAV file is given twice")
        ids, paths = list(args.wavs), [Path(w) for w in args.wavs]
        source = "command line"
    check_paths(paths, source)
    device = resolve_device(args.device)
    embedder, meta = _load(args.checkpoint, device)
    ids, vectors = embed_files(embedder, paths, ids, args.batch_size, device, embedder.features.sample_rate)
    save_embeddings(args.out, ids, vectors, meta)
    print(f"{len(ids)} embeddings of dimension {vectors.shape[1]} -> {args.out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    emb = load_embeddings(args.embeddings)
    trials = read_trials(args.trials)
    cohort = load_embeddings(args.cohort) if args.cohort else None
    back = load_backend(args.backend) if args.backend else None
    scores = _score(emb, trials, cohort, args.top_k, back, args.cohort)
    header = {"embeddings_sha256": sha256(args.embeddings)}
    if back is not None:
        header["backend_sha256"] = sha256(args.backend)
    if cohort is not None:
        header.update(as_norm_top_k=str(args.top_k), cohort_sha256=sha256(args.cohort))
    write_scores(args.out, trials, scores, header)
    print(f"{len(trials)} scores -> {args.out}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    s = read_scores(args.scores)
    try:
        results = compute_metrics(s.scores, s.labels, s.header.get("trials_sha256"))
    except SSPSError as e:
        raise SSPSError(f"{args.scores}: {e}") from None
    results["scores_sha256"] = sha256(args.scores)
    _write_json(Path(args.out), results)
    print(summary_line(results))
    return 0


def default_eval_dir(checkpoint: str | Path, trials: str | Path) -> Path:
    """Where ``ssps eval`` writes by default, and where ``ssps info`` looks: beside the checkpoint."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / "eval" / f"{checkpoint.stem}_{Path(trials).stem}"


def cmd_eval(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else default_eval_dir(args.checkpoint, args.trials)
    a = args
    results = evaluate(
        a.checkpoint, a.trials, a.data, out, a.batch_size, a.device, a.cohort, a.top_k, backend=a.backend
    )
    print(summary_line(results))
    print(f"results: {out / 'results.json'}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ssps.eval.verifier import Verifier
    from ssps.export.runtime import exported_format

    check_paths([Path(args.a), Path(args.b)], "verify")
    onnx = exported_format(args.checkpoint) == "onnx"
    device = torch.device("cpu") if onnx and args.device == "auto" else resolve_device(args.device)
    verifier = Verifier.from_checkpoint(args.checkpoint, device=device, backend=args.backend)
    score = verifier.score(args.a, args.b)
    if args.threshold is None:
        print(f"score {score:.6f} (cosine; no --threshold given, so no decision)")
    else:
        decision = "accept" if score >= args.threshold else "reject"
        print(f"score {score:.6f} {decision} (threshold {args.threshold:g})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    def add_model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--batch-size", type=int, default=32, help="equal-length utterances per forward pass")
        p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")

    p = sub.add_parser("embed", help="full-utterance embeddings of a manifest or of audio files")
    p.add_argument("checkpoint")
    p.add_argument("wavs", nargs="*", metavar="WAV")
    p.add_argument("--manifest", help="embed every utterance of this manifest")
    p.add_argument("--out", required=True, help="output .npz")
    add_model_args(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("score", help="cosine scores (optionally AS-norm) of a trial list")
    p.add_argument("embeddings")
    p.add_argument("trials")
    p.add_argument("--out", required=True, help="output score file")
    p.add_argument("--cohort", help="cohort embeddings .npz: turns on AS-norm")
    p.add_argument("--top-k", type=int, default=300, help="AS-norm: top cohort scores kept")
    p.add_argument("--backend", help="back-end file from `ssps backend` (label-free WCCN) before scoring")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("metrics", help="EER and minDCF (p_target 0.01 and 0.05) of a score file")
    p.add_argument("scores")
    p.add_argument("--out", required=True, help="output results .json")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("eval", help="embed, score and measure a trial list in one go")
    p.add_argument("checkpoint")
    p.add_argument("trials")
    p.add_argument("--data", required=True, help="audio root the trial paths are relative to")
    p.add_argument(
        "--out", help="output folder (default: CKPT_DIR/eval/<checkpoint>_<trials>, where `ssps info` looks)"
    )
    p.add_argument("--cohort", help="cohort embeddings .npz: turns on AS-norm")
    p.add_argument("--top-k", type=int, default=300)
    p.add_argument("--backend", help="back-end file from `ssps backend` (label-free WCCN) before scoring")
    add_model_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("verify", help="score two recordings and accept or reject")
    p.add_argument(
        "checkpoint", help="an ssps checkpoint, or a model from `ssps export` (.onnx, TorchScript)"
    )
    p.add_argument("a", metavar="A.wav")
    p.add_argument("b", metavar="B.wav")
    p.add_argument("--threshold", type=float, help="accept when the cosine score >= this")
    p.add_argument("--backend", help="back-end file from `ssps backend` for this model")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=cmd_verify)
