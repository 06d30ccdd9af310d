"""Views: the augmented crops and the clean reference frame SSPS clusters."""

from __future__ import annotations

import numpy as np

from ssps.data.views import CropSpec, Views

RATE = 100


def _loud(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return wav + 100.0 + rng.standard_normal(len(wav))  # an augmentation no crop could hide


def _offset(wav: np.ndarray, part: np.ndarray) -> int | None:
    for start in range(len(wav) - len(part) + 1):
        if np.array_equal(wav[start : start + len(part)], part):
            return start
    return None


def test_reference_frame_is_an_unaugmented_crop_at_a_random_start():
    wav = np.arange(1000, dtype=np.float32)  # every excerpt is unique, so its offset is known
    views = Views([CropSpec(2, 0.5)], augment=_loud, reference_seconds=2.0, sample_rate=RATE)
    starts = set()
    for seed in range(20):
        out = views(wav, np.random.default_rng(seed))
        assert all(v.min() > 50 for v in out["views"])  # the crops were augmented
        start = _offset(wav, out["reference"])
        assert start is not None, "the reference frame is not a clean excerpt of the utterance"
        starts.add(start)
    assert len(starts) > 10  # a random start, not the centre (400) every time
