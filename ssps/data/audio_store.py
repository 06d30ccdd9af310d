"""The training audio in RAM: every usable utterance decoded once to int16, in one shared-memory file.

``data.cache_gb`` > 0 and the corpus fits: the first process decodes the files into
``/dev/shm/ssps-audio-<key>.i16`` (the key hashes the manifest, the rows and the rate), atomically, and
every process maps it read-only. Loader workers and DDP ranks share the same physical pages (no copy per
worker), and later runs on the same corpus (the demo's jobs) reuse the file. Delete
``/dev/shm/ssps-audio-*`` to free the memory.

Only files stored losslessly as 16-bit mono PCM at the training rate are kept (their int16 samples scale
to exactly the float32 that libsndfile returns); others, and files that fail to decode, are read from
disk as before, so crops and load failures are the same with or without the store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ssps.audio.clips import ArrayClip
from ssps.data.manifest import Manifest
from ssps.errors import SSPSError
from ssps.utils.files import atomic_path

log = logging.getLogger("ssps")


def store_dir() -> Path:
    """``$SSPS_STORE_DIR`` when set (the test suite points it at a temporary folder), else /dev/shm when
    writable, else the temporary folder."""
    if os.environ.get("SSPS_STORE_DIR"):
        return Path(os.environ["SSPS_STORE_DIR"])
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


STORE_FORMAT = 2  # 2: the index holds absolute paths (1 held them as the manifest spelled them)


def stored_path(path: str | Path) -> str:
    """How the key, the index and every lookup spell a file: absolute, symlinks kept. One spelling for all
    three, so a run that shares a store (same key) always finds its files in it."""
    return os.path.abspath(path)


def store_key(manifest: Manifest, rows: list[int], sample_rate: int) -> str:
    h = hashlib.sha256(f"{STORE_FORMAT}\0{sample_rate}\0".encode())
    for i in rows:
        path = manifest.resolve(i)
        try:
            stat = path.stat()
            h.update(f"{stored_path(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        except OSError:
            h.update(f"{stored_path(path)}\0missing\0".encode())
    return h.hexdigest()[:20]


def _decode(path: Path, sample_rate: int) -> np.ndarray | None:
    """int16 samples if the file is 16-bit mono PCM at ``sample_rate``, decodes, and is not silent."""
    try:
        info = sf.info(str(path))
        if info.samplerate != sample_rate or info.channels != 1 or info.subtype != "PCM_16":
            return None
        wav, _ = sf.read(str(path), dtype="int16")
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    return wav if len(wav) and np.any(wav) else None


class AudioStore:
    """Read-only view of a built store: ``clip(row)`` is an :class:`ArrayClip`, or None when not stored.

    Pickles as its path (a spawned loader worker maps the file again instead of receiving a copy).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        with np.load(self.path.with_suffix(".idx.npz")) as index:
            self.offsets, self.lengths = index["offsets"], index["lengths"]
            self.paths = [str(p) for p in index["paths"]]
        self.row_of = {p: i for i, p in enumerate(self.paths) if self.lengths[i] > 0}
        self._samples: np.ndarray | None = None

    @property
    def samples(self) -> np.ndarray:
        if self._samples is None:
            size = self.path.stat().st_size // 2
            empty = np.zeros(0, dtype=np.int16)
            self._samples = np.memmap(self.path, dtype=np.int16, mode="r", shape=(size,)) if size else empty
        return self._samples

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_samples": None}

    @property
    def nbytes(self) -> int:
        return int(self.lengths.sum()) * 2

    def clip(self, row: int) -> ArrayClip | None:
        n = int(self.lengths[row])
        if n == 0:
            return None
        start = int(self.offsets[row])
        return ArrayClip(self.samples[start : start + n])

    def clip_of(self, path: str | Path) -> ArrayClip | None:
        """A stored training file as a clip (read in parts), or None when it is not in the store."""
        row = self.row_of.get(stored_path(path))
        return None if row is None else self.clip(row)

    def get(self, path: str | Path) -> np.ndarray | None:
        """The float32 waveform of a stored training file, or None (the babble noise source's lookup)."""
        clip = self.clip_of(path)
        return None if clip is None else clip.read(0, clip.frames)


def estimate_bytes(manifest: Manifest, rows: list[int], sample_rate: int) -> int:
    """int16 bytes of ``rows`` from the manifest's durations (headers where a duration is missing)."""
    total = 0.0
    for i in rows:
        seconds = manifest.rows[i].duration
        if seconds <= 0:
            try:
                seconds = sf.info(str(manifest.resolve(i))).duration
            except (sf.LibsndfileError, RuntimeError, OSError):
                seconds = 0.0
        total += seconds * sample_rate * 2
    return int(total)


def build_store(
    manifest: Manifest, rows: list[int], sample_rate: int, budget_gb: float, directory: Path | None = None
) -> AudioStore | None:
    """Decode ``rows`` into the shared store (or reuse it); None when off or over the budget.

    Call it in one process first (DDP: the main rank, then a barrier), then in the others to map it.
    """
    if budget_gb <= 0:
        return None
    need = estimate_bytes(manifest, rows, sample_rate)
    if need > budget_gb * 2**30:
        log.info(
            "data.cache_gb=%g: the training audio needs %.2f GB; reading crops from disk instead",
            budget_gb,
            need / 2**30,
        )
        return None
    directory = Path(directory or store_dir())
    path = directory / f"ssps-audio-{store_key(manifest, rows, sample_rate)}.i16"
    if not path.with_suffix(".idx.npz").is_file():
        _write(path, manifest, rows, sample_rate, len(manifest))
    store = AudioStore(path)
    log.info(
        "training audio in RAM: %d of %d files, %.1f MB in %s",
        len(store.row_of),
        len(rows),
        store.nbytes / 1e6,
        path,
    )
    return store


def _write(path: Path, manifest: Manifest, rows: list[int], sample_rate: int, num_rows: int) -> None:
    offsets = np.zeros(num_rows, dtype=np.int64)
    lengths = np.zeros(num_rows, dtype=np.int64)
    paths = np.array([stored_path(manifest.resolve(i)) for i in range(num_rows)], dtype=np.str_)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            at = 0
            for i in rows:
                wav = _decode(manifest.resolve(i), sample_rate)
                if wav is None:
                    continue
                f.write(wav.astype("<i2", copy=False).tobytes())
                offsets[i], lengths[i] = at, len(wav)
                at += len(wav)
        with atomic_path(path.with_suffix(".idx.npz")) as tmp, open(tmp, "wb") as f:
            np.savez(f, offsets=offsets, lengths=lengths, paths=paths)
    except OSError as e:
        raise SSPSError(f"{path}: cannot write the in-RAM audio store ({e}); set data.cache_gb=0") from None
