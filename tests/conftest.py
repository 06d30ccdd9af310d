"""Shared fixtures: a toy corpus synthesised in numpy (no TTS), small enough for unit tests; the
``requires`` marker; a bounded wait for multi-process tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ssps.data.manifest import Utterance, write_manifest

torch.set_num_threads(1)

# The training-audio store (ssps.data.audio_store) of every test run, subprocesses included, goes to a
# folder of this session instead of /dev/shm, and is removed at the end.
STORE_DIR = tempfile.mkdtemp(prefix="ssps-test-store-")
os.environ["SSPS_STORE_DIR"] = STORE_DIR


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(STORE_DIR, ignore_errors=True)


# Under CI=true a missing system tool or optional module fails the test instead of skipping it, so a CI
# image that lost espeak-ng, sox or faiss cannot pass by skipping everything that needs them.
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(*needs: str) -> None:
    """Skip (fail under CI=true) unless every program (on PATH) or module (``module:NAME``) exists."""
    missing = [
        n
        for n in needs
        if (importlib.util.find_spec(n[7:]) is None if n.startswith("module:") else shutil.which(n) is None)
    ]
    if missing:
        msg = f"{', '.join(missing)} not installed (run `make system` / `make .venv/.installed-stamp`)"
        if IN_CI:
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(*needs): programs or module:NAME the test needs")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires"):
        require(*mark.args)


def join_processes(context, timeout_s: float) -> None:
    """Wait for a ``torch.multiprocessing`` context; kill its processes and fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for p in context.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"worker processes still running after {timeout_s:.0f} s (deadlock?)", pytrace=False)


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (for a test's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    """The environment torchrun gives rank ``rank`` of ``world_size`` (one thread), over this one."""
    return {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
    }


def make_toy_corpus(
    root: Path, speakers: int = 4, sessions: int = 2, utterances: int = 3, seconds: float = 1.5, seed: int = 0
) -> Path:
    """Write ``root/wav/<spk>/<sess>/<n>.wav`` (speaker = pitch and timbre, session = filter and noise),
    ``root/train.tsv`` and ``root/trials.txt`` (VoxCeleb format, cross-session). Returns ``root``."""
    rng = np.random.default_rng(seed)
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    rows = []
    for s in range(speakers):
        f0 = 100 + 40 * s
        harmonics = rng.uniform(0.2, 1.0, size=8)
        for e in range(sessions):
            tilt = rng.uniform(0.5, 1.0)
            noise_level = rng.uniform(0.01, 0.05)
            for u in range(utterances):
                vibrato = 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
                wav = sum(
                    h * tilt**k * np.sin(2 * np.pi * f0 * (k + 1) * vibrato * t)
                    for k, h in enumerate(harmonics)
                )
                wav = wav * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 3) * t) ** 2)
                wav = 0.3 * wav / np.abs(wav).max() + noise_level * rng.standard_normal(len(t))
                utt = f"spk{s}/sess{e}/{u:03d}.wav"
                path = root / "wav" / utt
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wav.astype(np.float32), sr)
                # Session ids are corpus-wide recording ids (like VoxCeleb videos), not per speaker.
                rows.append(Utterance(utt, f"wav/{utt}", f"spk{s}", f"rec{s * sessions + e:03d}", seconds))
    write_manifest(root / "train.tsv", rows)
    lines = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if a.speaker != b.speaker or a.session != b.session:  # targets only across sessions
                lines.append(f"{int(a.speaker == b.speaker)} {a.utterance} {b.utterance}")
    (root / "trials.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory) -> Path:
    return make_toy_corpus(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """The built-in corpus's tiny preset (needs espeak-ng + MBROLA, which `make test` installs)."""
    require("espeak-ng", "mbrola")
    from ssps.corpus.synth import synth_corpus

    out = tmp_path_factory.mktemp("tiny_corpus")
    synth_corpus(out, "tiny", seed=0, workers=2, progress=False)
    return out
