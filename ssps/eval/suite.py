"""One model on several trial lists over one manifest: every utterance is embedded once.

>>> import numpy as np
>>> t = Trials(["a", "a"], ["b", "c"], np.array([True, False]), Path("t.txt"), "x")
>>> table = Embeddings(["a", "b", "c"], np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]], dtype=np.float32))
>>> brief(score_list(table, t))["eer"]
0.0
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch.nn as nn

from ssps.data.manifest import read_manifest
from ssps.data.trials import Trials, read_trials
from ssps.eval.embed import Embeddings, embed_files
from ssps.eval.metrics import eer, min_dcf
from ssps.eval.score import score_trials


def embed_manifest(embedder: nn.Module, manifest: str | Path) -> Embeddings:
    """Full-utterance embeddings of every row of ``manifest``, keyed by utterance id."""
    m = read_manifest(manifest)
    ids = [r.utterance for r in m.rows]
    _, emb = embed_files(embedder, [m.resolve(i) for i in range(len(m))], ids, progress=False)
    return Embeddings(ids, emb)


def score_list(table: Embeddings, trials: Trials) -> dict:
    """Cosine scores of one list and the metrics reported for it (minDCF keys carry their p_target)."""
    scores = score_trials(table, trials)
    return {
        "scores": scores,
        "labels": trials.labels,
        "eer": eer(scores, trials.labels),
        "min_dcf_0.01": min_dcf(scores, trials.labels, p_target=0.01),
        "min_dcf_0.05": min_dcf(scores, trials.labels, p_target=0.05),
        "n_target": int(np.sum(trials.labels)),
        "n_nontarget": int(len(trials.labels) - np.sum(trials.labels)),
        "trials_sha256": trials.sha256,
    }


def brief(result: dict) -> dict:
    """``score_list``'s result without the per-trial arrays (for JSON)."""
    return {k: v for k, v in result.items() if k not in ("scores", "labels")}


def evaluate_lists(embedder: nn.Module, manifest: str | Path, lists: dict[str, Path]) -> dict[str, dict]:
    """{list name: score_list result} for trial lists whose utterances are all in ``manifest``."""
    table = embed_manifest(embedder, manifest)
    return {name: score_list(table, read_trials(path)) for name, path in lists.items()}
