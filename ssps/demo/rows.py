"""The demo's rows: each method of the report as a continuation (or scratch run, or chain) with its config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One method of the report: a continuation of ``family``'s base with ``config`` and ``overrides``.

    ``kind``: "continue" (from the family's base, the continuation's epochs), "scratch" (no base: the base's
    plus the continuation's epochs from a random init, the same total steps) or "chain" (``ssps chain``
    from the seed's ``after`` row: ``Budget.rounds`` rounds of pseudo-labels then supervised training).
    """

    family: str  # "simclr" or "dino": whose base it continues ("" for a scratch row)
    config: str
    overrides: tuple[str, ...] = ()
    ssps: bool = False  # SSPS from epoch base + 1 (the fill epoch is the base's last-plus-one)
    kind: str = "continue"
    after: str = ""  # chain rows: the row whose model (same seed) the chain starts from


ALL = "ssps.margin_keep=1.0"  # every knn candidate drawable: the rows built on simclr_ssps's sampler before
# the margin filter (docs/experiments.md section 14 made it the default)

# The report's rows, in order. Names that read labels or recording metadata say so.
ROWS: dict[str, Row] = {
    "simclr": Row("simclr", "simclr.yaml"),
    "simclr_ssps": Row("simclr", "simclr_ssps.yaml", ssps=True),
    "simclr_ssps_paper": Row(
        "simclr",
        "simclr_ssps.yaml",
        ("ssps.sampling=kmeans-repr", "ssps.exclude_same_channel=false", "ssps.num_clusters=376", ALL),
        ssps=True,
    ),
    "simclr_ssps_session_meta": Row("simclr", "simclr_ssps_session_meta.yaml", ssps=True),
    "simclr_oracle": Row("simclr", "simclr_ssps_session_meta.yaml", ("ssps.sampling=oracle",), ssps=True),
    # Label-free: only mutual neighbours are drawn (the anchor among its candidate's 3 nearest).
    "simclr_ssps_mutual": Row("simclr", "simclr_ssps.yaml", ("ssps.mutual_neighbours=3", ALL), ssps=True),
    # Label-free: the single nearest allowed neighbour (the sampler's most precise draw on the probe).
    "simclr_ssps_knn1": Row("simclr", "simclr_ssps.yaml", ("ssps.knn_neighbours=1", ALL), ssps=True),
    # Label-free: simclr_ssps draws among the batch's three quarters of candidates that stand out most from
    # the anchor's 64th nearest queue entry (ssps.margin_keep; docs/experiments.md, section 12); these draw
    # among every candidate (the shipped sampler until section 14) or among the half.
    "simclr_ssps_all": Row("simclr", "simclr_ssps.yaml", (ALL,), ssps=True),
    "simclr_ssps_margin": Row("simclr", "simclr_ssps.yaml", ("ssps.margin_keep=0.5",), ssps=True),
    # Diagnostic (reads labels): label-free SSPS with its wrong-speaker draws dropped.
    "simclr_ssps_oracle_filter": Row(
        "simclr", "simclr_ssps.yaml", ("ssps.oracle_filter=true", ALL), ssps=True
    ),
    "simclr_ssps_oracle_filter_half": Row(
        "simclr",
        "simclr_ssps.yaml",
        ("ssps.oracle_filter=true", "ssps.oracle_filter_share=0.5", ALL),
        ssps=True,
    ),
    "dino": Row("dino", "dino.yaml"),
    "dino_ssps": Row("dino", "dino_ssps.yaml", ssps=True),
    "dino_ssps_margin": Row("dino", "dino_ssps.yaml", ("ssps.margin_keep=0.5",), ssps=True),
    "dino_ssps_margin75": Row("dino", "dino_ssps.yaml", ("ssps.margin_keep=0.75",), ssps=True),
    # The upper bound of the pseudo-label rows: AAM-softmax on the true speakers, the same total steps.
    "supervised": Row("", "supervised.yaml", kind="scratch"),
    # Label-free: SimCLR + SSPS's model -> pseudo-speakers -> supervised on them, for Budget.rounds rounds;
    # reported per round as simclr_ssps_pl_r1, _r2, ...
    "simclr_ssps_pl": Row("simclr", "chain.yaml", kind="chain", after="simclr_ssps"),
}
# The session-metadata row is one flag away (--rows ...,simclr_ssps_session_meta): left out of the default so
# that `make demo` keeps the five continuations it was timed with.
DEFAULT_ROWS = ("simclr", "simclr_ssps", "simclr_oracle", "dino", "dino_ssps")
QUICK_ROWS = ("simclr", "simclr_ssps", "simclr_oracle")
