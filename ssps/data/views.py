"""Views: one utterance -> N crops (each augmented on its own) and an optional clean reference frame.

A views callable knows crop lengths and the augmentation, never the SSL method's loss. :class:`Views`
takes a clip (:mod:`ssps.audio.clips`: only the crops are read) or a decoded waveform.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ssps.audio.clips import ArrayClip, crop_random

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class CropSpec:
    """``count`` crops of ``seconds`` each."""

    count: int
    seconds: float


class Views:
    """Turn a waveform into groups of augmented random crops plus an optional clean reference.

    Args:
        groups: crop groups; crops of one group share a length so they batch together
            (SimCLR: one group of 2 x 2 s; DINO: 2 x 4 s global and 4 x 2 s local).
        augment: ``f(wav, rng) -> wav``, applied to each crop independently; None = no augmentation.
        reference_seconds: length of the un-augmented reference frame (SSPS); 0 = none.
        sample_rate: samples per second.

    >>> views = Views([CropSpec(2, 0.5)], reference_seconds=1.0, sample_rate=100)
    >>> out = views(np.arange(80, dtype=np.float32), np.random.default_rng(0))
    >>> [v.shape for v in out["views"]], out["reference"].shape
    ([(50,), (50,)], (100,))
    """

    reads_clips = True  # TrainDataset hands it a clip instead of the decoded file

    def __init__(
        self,
        groups: list[CropSpec],
        augment: Augment | None = None,
        reference_seconds: float = 0.0,
        sample_rate: int = 16000,
    ):
        self.groups = groups
        self.augment = augment
        self.reference_seconds = reference_seconds
        self.sample_rate = sample_rate

    def __call__(self, wav, rng: np.random.Generator) -> dict[str, object]:
        """``wav``: (N,) samples or a clip."""
        clip = ArrayClip(wav) if isinstance(wav, np.ndarray) else wav
        crops = []
        for group in self.groups:
            n = int(round(group.seconds * self.sample_rate))
            for _ in range(group.count):
                crop = crop_random(clip, n, rng)
                if self.augment is not None:
                    crop = self.augment(crop, rng)
                crops.append(crop.astype(np.float32, copy=False))
        out: dict[str, object] = {"views": crops}
        if self.reference_seconds > 0:
            # The reference frame is never augmented: SSPS clusters clean utterances (SSPS.md). Its start is
            # random, as in the reference (a new 4 s excerpt each epoch), not the centre.
            n = int(round(self.reference_seconds * self.sample_rate))
            out["reference"] = crop_random(clip, n, rng).astype(np.float32, copy=False)
        return out
