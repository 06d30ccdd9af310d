"""Training dataset and the deterministic, resumable, rank-aware batch sampler.

Every random choice for a sample comes from a generator seeded by (seed, epoch, index), so results do not
depend on the number of loader workers, and a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from ssps.audio.clips import ArrayClip, open_clip
from ssps.audio.io import load_audio
from ssps.data.manifest import Manifest
from ssps.errors import SSPSError

log = logging.getLogger("ssps")


def usable_rows(manifest: Manifest, min_duration: float, check: str = "header") -> tuple[list[int], dict]:
    """Indices of rows that can be trained on, and the counts of those skipped (with reasons).

    ``check``: "exists" (stat only, for very large corpora) or "header" (also read the audio header).
    Rows with a known duration below ``min_duration`` are skipped too.
    """
    keep, skipped = [], {"missing": 0, "unreadable": 0, "too_short": 0}
    examples: dict[str, str] = {}
    for i, row in enumerate(manifest.rows):
        path = manifest.resolve(i)
        reason = None
        if not path.is_file():
            reason = "missing"
        elif check == "header":
            try:
                info = sf.info(str(path))
                if info.frames == 0 or info.frames / info.samplerate < min_duration:
                    reason = "too_short"
            except (RuntimeError, sf.LibsndfileError):
                reason = "unreadable"
        elif 0 < row.duration < min_duration:
            reason = "too_short"
        if reason:
            skipped[reason] += 1
            examples.setdefault(reason, str(path))
        else:
            keep.append(i)
    if not keep:
        raise SSPSError(f"{manifest.source}: no usable utterance ({skipped}; e.g. {examples})")
    if sum(skipped.values()):
        log.warning(
            "skipped %d of %d manifest rows: %s (e.g. %s)",
            sum(skipped.values()),
            len(manifest),
            skipped,
            examples,
        )
    return keep, skipped


class TrainDataset(Dataset):
    """Manifest rows -> views. Items are requested as ``(row, epoch)`` pairs by :class:`EpochBatchSampler`.

    Audio: from ``store`` (:mod:`ssps.data.audio_store`, the training set in RAM) when it holds the row,
    else only the crops are read from disk (:class:`ssps.audio.clips.FileClip`) -- when ``views`` reads
    clips (``views.reads_clips``, as :class:`ssps.data.views.Views` does); any other callable is given the
    whole decoded waveform.

    Yields dicts: ``index`` (the manifest row actually used), ``views`` (list of float32 arrays),
    ``failed`` (paths that could not be loaded for this item), optionally ``reference``.

    A file that passed the start-up check can still fail when decoded (a truncated FLAC, NaN samples):
    a days-long run should not die for one bad file, so it is replaced by another usable row drawn from
    a generator seeded by (seed, epoch, index, attempt), i.e. the same replacement on every resume.
    The failures travel with the batch so the loop can count and log them per epoch.
    """

    MAX_ATTEMPTS = 8  # this many failures in a row means the corpus, not one file, is broken

    def __init__(
        self,
        manifest: Manifest,
        views: Callable,
        seed: int,
        sample_rate: int = 16000,
        rows: list[int] | None = None,
        store=None,
    ):
        self.manifest = manifest
        self.store = store
        self.reads_clips = bool(getattr(views, "reads_clips", False))
        self.views = views
        self.seed = seed
        self.sample_rate = sample_rate
        self.rows = np.asarray(rows if rows is not None else range(len(manifest)))

    def __len__(self) -> int:
        return len(self.manifest)

    def _views(self, row: int, rng: np.random.Generator) -> dict:
        """The views of one row; SSPSError when its audio cannot be read or is not finite."""
        clip = self.store.clip(row) if self.store is not None else None
        if clip is None and not self.reads_clips:
            clip = ArrayClip(load_audio(self.manifest.resolve(row), self.sample_rate))
        if clip is None:
            clip = open_clip(self.manifest.resolve(row), self.sample_rate)
        try:
            out = self.views(clip if self.reads_clips else clip.read(0, clip.frames), rng)
        finally:
            if hasattr(clip, "close"):
                clip.close()
        arrays = [*out["views"], *([out["reference"]] if "reference" in out else [])]
        if not all(np.isfinite(a).all() for a in arrays):
            raise SSPSError(f"{self.manifest.resolve(row)}: non-finite samples")
        return out

    def _load(self, index: int, epoch: int, rng: np.random.Generator) -> tuple[dict, int, list[str]]:
        failed: list[str] = []
        row = index
        state = rng.bit_generator.state  # a replacement row gets the draws the failed one would have had
        for attempt in range(self.MAX_ATTEMPTS):
            path = self.manifest.resolve(row)
            try:
                rng.bit_generator.state = state
                return self._views(row, rng), row, failed
            except SSPSError:
                pass
            failed.append(str(path))
            row = int(np.random.default_rng([self.seed, epoch, index, attempt, 104729]).choice(self.rows))
        raise SSPSError(
            f"{self.manifest.source}: {self.MAX_ATTEMPTS} files in a row could not be loaded "
            f"(e.g. {failed[0]}); check the corpus"
        )

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, epoch = key
        rng = np.random.default_rng([self.seed, epoch, index])
        out, used, failed = self._load(index, epoch, rng)
        out["index"] = used  # queues are indexed by the utterance whose audio this is
        out["failed"] = failed
        return out


def collate(items: list[dict]) -> dict:
    """Stack view k of every item into one (B, N) tensor per view."""
    out = {
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "views": [torch.from_numpy(np.stack(vs)) for vs in zip(*[it["views"] for it in items], strict=True)],
        "failed": [path for it in items for path in it.get("failed", [])],
    }
    if "reference" in items[0]:
        out["reference"] = torch.from_numpy(np.stack([it["reference"] for it in items]))
    return out


class EpochBatchSampler(Sampler):
    """Global batches from a permutation seeded by (seed, epoch); each rank takes its slice.

    Args:
        rows: usable manifest rows.
        global_batch: batch size across all ranks (must divide by ``world_size``).
        steps: batches per epoch; 0 = one pass (the last incomplete batch is dropped).
        start_step: batches of this epoch to skip (mid-epoch resume).
    """

    def __init__(
        self,
        rows: list[int],
        global_batch: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        steps: int = 0,
        start_step: int = 0,
    ):
        if global_batch % world_size:
            raise SSPSError(f"train.batch_size={global_batch} does not divide by {world_size} ranks")
        if len(rows) < global_batch:
            raise SSPSError(
                f"train.batch_size={global_batch} is larger than the {len(rows)} usable utterances"
            )
        self.rows = np.asarray(rows)
        self.global_batch = global_batch
        self.local = global_batch // world_size
        self.seed, self.epoch, self.rank = seed, epoch, rank
        self.steps = steps or len(rows) // global_batch
        self.start_step = start_step

    def __len__(self) -> int:
        return self.steps - self.start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch, 7919])
        need = self.steps * self.global_batch
        perm = np.concatenate([rng.permutation(self.rows) for _ in range(-(-need // len(self.rows)))])
        for step in range(self.start_step, self.steps):
            batch = perm[step * self.global_batch : (step + 1) * self.global_batch]
            mine = batch[self.rank * self.local : (self.rank + 1) * self.local]
            yield [(int(i), self.epoch) for i in mine]
