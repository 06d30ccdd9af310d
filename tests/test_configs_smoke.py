"""A smoke run of every shipped config on the tiny built-in corpus: 2 epochs of 1 step (SSPS ones: a fill
epoch, then an SSPS epoch), with each config's own encoder, method and SSPS settings; only data and sizes
shrink."""

from pathlib import Path

import pytest
import torch

from ssps.checkpoint import load_embedder
from ssps.config import load_config
from ssps.train.trainer import train

# chain*.yaml are `ssps chain` configs (tests/test_pseudo.py loads them), not training configs.
CONFIGS = sorted(
    p for p in (Path(__file__).parents[1] / "configs").glob("**/*.yaml") if not p.stem.startswith("chain")
)
HEAVY = ("ecapa1024", "resnet34")  # paper-size encoders: seconds per step on a CPU, so in `make test-slow`


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if any(h in p.stem for h in HEAVY) else p for p in CONFIGS],
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_config_trains_on_the_tiny_corpus(path, tiny_corpus, tmp_path):
    base = load_config(path)
    overrides = [
        f"data.train_manifest={tiny_corpus / 'train.tsv'}",
        "data.val_trials=",
        "data.augment.noise_manifest=",
        "data.augment.rir_manifest=",
        "data.num_workers=0",
        "data.check_files=header",
        "train.batch_size=4",
        "train.steps_per_epoch=1",
        "train.epochs=2",
        "train.threads=1",
    ]
    if base.ssps.enabled:
        overrides.append("ssps.start_epoch=1")
    cfg = load_config(path, overrides)
    latest = train(cfg, tmp_path / "run")
    embedder, stored = load_embedder(latest)
    assert (
        stored.encoder == base.encoder
        and stored.method == base.method
        and stored.ssps.sampling == base.ssps.sampling
    )
    with torch.no_grad():
        emb = embedder(torch.randn(1, 32000))
    assert emb.shape == (1, base.encoder.embed_dim) and torch.isfinite(emb).all()


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.parent.name == "configs"], ids=lambda p: p.stem)
def test_built_in_corpus_configs_validate_on_a_dev_list(path):
    """Validation during training is a choice-making signal: on the built-in corpus it reads a dev list,
    never one of the test lists the figures come from."""
    val = load_config(path).data.val_trials
    assert not val or Path(val).name.startswith("dev_"), f"{path.name}: data.val_trials={val}"
