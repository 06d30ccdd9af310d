"""``ssps info``: what a checkpoint (or an exported model) holds, and the evaluations saved beside it.

Evaluation results are found in one place: the checkpoint's folder (the run folder) and its subfolders,
where ``ssps eval`` writes ``results.json`` (by default ``RUN/eval/<checkpoint>_<trials>/``). A results
file belongs to the checkpoint when its ``checkpoint_sha256`` is the checkpoint's, so results of other
checkpoints of the run are not shown. Validation during training is read from ``RUN/metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ssps.config import Config, to_dict
from ssps.errors import SSPSError
from ssps.utils.files import sha256

NOT_RECORDED = "not recorded"
RESULTS_FILE = "results.json"
SEARCH_DEPTH = 3  # RUN/eval/<name>/results.json, and one level more
RESULT_KEYS = ("trials", "eer", "min_dcf_0.01", "min_dcf_0.05", "n_trials", "as_norm_top_k")


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """Everything ``ssps info`` reports, as plain data; SSPSError (one line) for a file it cannot read."""
    from ssps.export.runtime import exported_format

    path = Path(path)
    if exported_format(path) is not None:
        return _exported_info(path)
    from ssps.checkpoint import checkpoint_config, load_checkpoint

    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, path)
    provenance = ckpt.get("provenance", {})
    digest = sha256(path)
    if ckpt.get("train") is not None:
        kind = "training (resumable: model, optimizer and schedule state)"
    elif "averaged_from" in provenance:
        kind = f"averaged (embedder only; mean of {len(provenance['averaged_from'])} checkpoints)"
    else:
        kind = "embedder only"
    return {
        "path": str(path),
        "kind": kind,
        "sha256": digest,
        **_model_summary(cfg, ckpt["embedder"], path),
        "epochs": ckpt["epoch"],
        "epochs_planned": cfg.train.epochs,
        "steps": ckpt["step"],
        "train_manifest": provenance.get("train_manifest", cfg.data.train_manifest or NOT_RECORDED),
        "train_manifest_sha256": provenance.get("train_manifest_sha256", NOT_RECORDED),
        "averaged_from": provenance.get("averaged_from"),
        "evaluations": find_results(path.parent, digest),
        "validation": _validation(path.parent, ckpt["epoch"]) if "averaged_from" not in provenance else None,
        "config": to_dict(cfg),
    }


def _model_summary(cfg: Config, state: dict | None, path: Path) -> dict[str, Any]:
    from ssps.embedder import Embedder

    model = Embedder(cfg)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise SSPSError(
                f"{path}: embedder weights do not match the stored config ({str(e)[:200]})"
            ) from None
    method = cfg.method.name + (f" + SSPS ({cfg.ssps.sampling})" if cfg.ssps.enabled else "")
    return {
        "method": method,
        "encoder": cfg.encoder.name,
        "embedding_dim": cfg.encoder.embed_dim,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _exported_info(path: Path) -> dict[str, Any]:
    from ssps.export.runtime import ExportedModel

    model = ExportedModel(path)
    meta = model.metadata
    return {
        "path": str(path),
        "kind": f"exported ({model.format}; input {meta['input']} {meta['input_shape']})",
        "sha256": sha256(path),
        **_model_summary(model.config, None, path),
        "source_checkpoint": meta["source_checkpoint"],
        "source_checkpoint_sha256": meta["source_checkpoint_sha256"],
        "embedding_normalized": meta["embedding_normalized"] == "true",
        "config": to_dict(model.config),
    }


def find_results(run_dir: Path, checkpoint_sha256: str) -> list[dict[str, Any]]:
    """``results.json`` files under ``run_dir`` that name this checkpoint, sorted by path."""
    found = []
    for depth in range(SEARCH_DEPTH + 1):
        for file in sorted(run_dir.glob("/".join(["*"] * depth + [RESULTS_FILE]))):
            try:
                data = json.loads(file.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue  # not ours or half-written by someone else: skip, do not fail
            if isinstance(data, dict) and data.get("checkpoint_sha256") == checkpoint_sha256:
                found.append({"file": str(file), **{k: data[k] for k in RESULT_KEYS if k in data}})
    return found


def _validation(run_dir: Path, epochs: int) -> dict[str, Any] | None:
    """The validation figures training logged at the end of the checkpoint's last epoch, if any."""
    log = run_dir / "metrics.jsonl"
    if epochs == 0 or not log.is_file():
        return None
    for line in reversed(log.read_text(errors="replace").splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == "epoch" and record.get("epoch") == epochs - 1:
            values = {k.removeprefix("val_"): v for k, v in record.items() if k.startswith("val_")}
            return {"epoch": epochs - 1, **values} if values else None
    return None


def format_info(info: dict[str, Any]) -> str:
    """The human-readable report."""
    rows = [
        ("kind", info["kind"]),
        ("method", info["method"]),
        (
            "encoder",
            f"{info['encoder']} ({info['parameters']:,} parameters, embedding {info['embedding_dim']})",
        ),
    ]
    if "epochs" in info:
        rows += [
            ("trained", f"{info['epochs']} of {info['epochs_planned']} epochs, {info['steps']} steps"),
            ("manifest", f"{info['train_manifest']} (sha256 {info['train_manifest_sha256']})"),
        ]
        if info["averaged_from"]:
            rows.append(("averaged", ", ".join(info["averaged_from"])))
    else:
        rows.append(("source", f"{info['source_checkpoint']} (sha256 {info['source_checkpoint_sha256']})"))
    rows.append(("sha256", info["sha256"]))
    if info.get("validation"):
        v = info["validation"]
        rows.append(("validation", f"epoch {v['epoch']}: {_figures(v, 'trials')}"))
    for r in info.get("evaluations", []):
        rows.append(("evaluation", f"{r.get('trials', '?')}: {_figures(r, 'n_trials')} ({r['file']})"))
    if "evaluations" in info and not info["evaluations"]:
        rows.append(("evaluation", "none saved beside it (ssps eval CKPT TRIALS --data ROOT)"))
    width = max(len(k) for k, _ in rows)
    text = [info["path"]] + [f"  {k:<{width}}  {v}" for k, v in rows]
    config = yaml.safe_dump(info["config"], sort_keys=False).rstrip().splitlines()
    return "\n".join(text + ["  config:"] + [f"    {line}" for line in config])


def _figures(r: dict[str, Any], count_key: str) -> str:
    parts = [f"EER {100 * r['eer']:.2f} %"] if "eer" in r else []
    parts += [f"minDCF(p={k[-4:]}) {r[k]:.4f}" for k in ("min_dcf_0.01", "min_dcf_0.05") if k in r]
    if count_key in r:
        parts.append(f"{r[count_key]} trials")
    if "as_norm_top_k" in r:
        parts.append(f"AS-norm top {r['as_norm_top_k']}")
    return ", ".join(parts)


def cmd_info(args: argparse.Namespace) -> int:
    info = checkpoint_info(args.checkpoint)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="what a checkpoint or exported model holds, and its saved evaluations")
    p.add_argument("checkpoint", help="latest.pt, epoch_NNNN.pt, averaged.pt, or an exported .onnx / .pt")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)
