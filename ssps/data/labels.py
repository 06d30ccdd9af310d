"""The speaker table for supervised training: speaker name -> class index, and each row's class.

Built here, in the data layer, and handed to the trainer as a tensor, so methods never read manifests.
Pseudo-labels (``ssps pseudo-label``) are ordinary speaker names, so the same table serves both.

>>> from pathlib import Path
>>> from ssps.data.manifest import Manifest, Utterance
>>> rows = [Utterance("1", "1.wav", "b"), Utterance("2", "2.wav", "a"), Utterance("3", "3.wav", "b")]
>>> m = Manifest(rows, Path("."))
>>> t = speaker_table(m)
>>> t.names, t.labels.tolist(), t.num_classes
(['a', 'b'], [1, 0, 1], 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssps.data.manifest import Manifest
from ssps.errors import SSPSError


@dataclass(frozen=True)
class SpeakerTable:
    """names: (C,) sorted speaker names; labels: (N,) long class of each manifest row."""

    names: list[str]
    labels: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.names)


def speaker_table(manifest: Manifest) -> SpeakerTable:
    """Classes from the manifest's speaker column; every row must have a speaker, and there must be >= 2."""
    missing = [r.utterance for r in manifest.rows if not r.speaker]
    if missing:
        raise SSPSError(
            f"{manifest.source}: supervised training needs a speaker on every row; {len(missing)} have none "
            f"(e.g. {missing[0]})"
        )
    names, codes = manifest.labels("speaker")
    if len(names) < 2:
        raise SSPSError(f"{manifest.source}: supervised training needs at least 2 speakers, got {len(names)}")
    return SpeakerTable(names, torch.tensor(codes, dtype=torch.long))
