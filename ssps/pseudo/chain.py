"""``ssps chain``: SSL checkpoint -> pseudo-labels -> supervised training on them, for N rounds.

Round r (1..N) labels the training manifest with the current model (``OUT/round_r/labels``), then trains
``supervised`` on those pseudo-speakers from the current model's encoder (``OUT/round_r/train``); the
result is the next round's model. After the last round the final model labels the data once more, so
the report shows its cluster quality too (``OUT/final_labels``). ``OUT/chain.json`` lists every round.

Each step is skipped when its output is complete, and an interrupted training resumes, so re-running the
same command continues the chain. The front end and encoder of every round come from the initial
checkpoint's config (the supervised config gives the rest: optimiser, epochs, margin, augmentation).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from ssps.checkpoint import checkpoint_config, load_checkpoint
from ssps.config import ConfigError, apply_overrides, from_dict, load_config, to_dict
from ssps.errors import SSPSError
from ssps.pseudo.cluster import PseudoLabelConfig
from ssps.pseudo.labelling import pseudo_label
from ssps.utils.files import atomic_write_text

log = logging.getLogger("ssps")


@dataclass(frozen=True)
class ChainConfig:
    init: str = ""  # the SSL checkpoint the chain starts from (SimCLR / DINO, with or without SSPS)
    train_manifest: str = ""  # the (unlabelled) training manifest; its speaker column is never read
    rounds: int = 2
    supervised: str = "configs/supervised.yaml"  # the config of each round's training
    overrides: tuple[str, ...] = ()  # key=value overrides of that config, e.g. train.epochs=10
    final_labels: bool = True  # label once more with the last model (its cluster quality in the report)
    device: str = "cpu"  # where the embedding runs
    pseudo: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)


def load_chain_config(path: str | Path, overrides: list[str] | None = None) -> ChainConfig:
    try:
        tree = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise SSPSError(f"{path}: chain config not found") from None
    try:
        return from_dict(ChainConfig, apply_overrides(tree, overrides or []))
    except ConfigError as e:
        raise SSPSError(f"{path}: {e}") from None


def round_config(chain: ChainConfig, manifest: Path, init: Path):
    """The supervised training config of one round: labels ``manifest``, encoder from ``init``."""
    ssl = checkpoint_config(load_checkpoint(init), init)
    cfg = load_config(chain.supervised, list(chain.overrides))
    if cfg.method.name != "supervised":
        raise SSPSError(f"{chain.supervised}: the chain trains method.name=supervised, got {cfg.method.name}")
    return replace(
        cfg,
        features=ssl.features,
        encoder=ssl.encoder,
        data=replace(cfg.data, train_manifest=str(manifest)),
        train=replace(cfg.train, init=str(init)),
    )


def _trained(run_dir: Path, epochs: int) -> bool:
    latest = run_dir / "latest.pt"
    return latest.is_file() and load_checkpoint(latest)["epoch"] >= epochs


def _labels(model: Path, chain: ChainConfig, out: Path) -> dict:
    if (out / "quality.json").is_file() and (out / "train.tsv").is_file():
        report = json.loads((out / "quality.json").read_text())
        if report.get("checkpoint") == str(model):
            return report
    return pseudo_label(model, chain.train_manifest, out, chain.pseudo, device=chain.device)


def _summary(report: dict, labels_dir: Path) -> dict:
    return {
        "num_pseudo_speakers": report["num_pseudo_speakers"],
        "quality": report.get("quality", {}),
        "labels": str(labels_dir / "train.tsv"),
    }


def run_chain(chain: ChainConfig, out_dir: str | Path) -> dict:
    """Run (or continue) every round; returns what ``OUT/chain.json`` holds."""
    from ssps.train.trainer import train

    out = Path(out_dir)
    if not chain.init or not chain.train_manifest:
        raise SSPSError("chain: set init (an SSL checkpoint) and train_manifest")
    if chain.rounds < 1:
        raise SSPSError(f"chain: rounds must be >= 1, got {chain.rounds}")
    model = Path(chain.init)
    load_checkpoint(model)  # a clear error before any work
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "chain.yaml", yaml.safe_dump(to_dict(chain), sort_keys=False))
    summary: dict = {"init": str(model), "rounds": []}
    for r in range(1, chain.rounds + 1):
        labels_dir, run_dir = out / f"round_{r}" / "labels", out / f"round_{r}" / "train"
        report = _labels(model, chain, labels_dir)
        log.info(
            "round %d: %d pseudo-speakers %s", r, report["num_pseudo_speakers"], report.get("quality", "")
        )
        cfg = round_config(chain, labels_dir / "train.tsv", model)
        if not _trained(run_dir, cfg.train.epochs):
            train(cfg, run_dir, resume=(run_dir / "latest.pt").is_file())
        summary["rounds"].append(
            {
                "round": r,
                "labels_from": str(model),
                **_summary(report, labels_dir),
                "model": str(run_dir / "latest.pt"),
            }
        )
        model = run_dir / "latest.pt"
        atomic_write_text(out / "chain.json", json.dumps(summary, indent=2) + "\n")
    if chain.final_labels:
        report = _labels(model, chain, out / "final_labels")
        summary["final"] = {"labels_from": str(model), **_summary(report, out / "final_labels")}
    summary["model"] = str(model)
    atomic_write_text(out / "chain.json", json.dumps(summary, indent=2) + "\n")
    return summary
