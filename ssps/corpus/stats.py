"""``ssps data stats CORPUS``: how strongly a label-free embedding encodes the recording session.

The embedding is the mean and standard deviation of log-mel features over time: no training, no labels,
and very sensitive to the channel. Its EER on same-session trials versus cross-session trials, and how
often an utterance's nearest neighbour comes from its own session, measure the channel effect that SSPS
is meant to overcome.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> crude_embedding(rng.standard_normal(16000).astype(np.float32)).shape
(80,)
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import zlib
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from ssps.corpus.conditions import apply_condition, draw_condition
from ssps.corpus.text import sentences
from ssps.corpus.voices import Identity, Voice, sibling_candidates, synthesize
from ssps.data.manifest import read_manifest
from ssps.errors import SSPSError
from ssps.eval.metrics import eer
from ssps.utils.files import atomic_write_text

N_MELS = 40
SIBLING_MAX_EER = 0.15
SIBLING_UTTERANCES = 6
SIBLING_RULE = (
    f"a candidate sibling is kept when the crude-embedding (log-mel mean+std, cosine) EER between "
    f"{SIBLING_UTTERANCES} clean utterances of the voice and {SIBLING_UTTERANCES} of the sibling is below "
    f"{SIBLING_MAX_EER} (eer); eer_conditioned repeats it with every utterance in its own random recording "
    f"condition (no codec); reference_* compare the voice with the next real voice, for scale"
)


def crude_embedding(wav: np.ndarray, sample_rate: int = 16000, n_mels: int = N_MELS) -> np.ndarray:
    """Log-mel mean and standard deviation over time.

    Args:
        wav: (T,) waveform.

    Returns:
        (2 * n_mels,) float32.
    """
    wav = np.asarray(wav, np.float64)
    if len(wav) < 400:
        wav = np.pad(wav, (0, 400 - len(wav)))
    # 25 ms Hann frames, 10 ms hop, 512-point FFT: plain numpy (librosa's feature path JIT-compiles on
    # first use, which costs seconds per process).
    frames = np.lib.stride_tricks.sliding_window_view(wav, 400)[::160] * np.hanning(400)
    power = np.abs(np.fft.rfft(frames, n=512, axis=1)) ** 2  # (T, 257)
    mel = _mel_basis(sample_rate, n_mels) @ power.T  # (n_mels, T)
    logmel = np.log(mel + 1e-6)  # (n_mels, T)
    return np.concatenate([logmel.mean(axis=1), logmel.std(axis=1)]).astype(np.float32)


@functools.cache
def _mel_basis(sample_rate: int, n_mels: int) -> np.ndarray:
    return librosa.filters.mel(sr=sample_rate, n_fft=512, n_mels=n_mels)


def normalise(emb: np.ndarray) -> np.ndarray:
    """Standardise each dimension over the set, then L2-normalise rows: (N, D) -> (N, D).

    Raw log-mel means share a large common offset; without centring every cosine would be near 1.
    """
    z = (emb - emb.mean(axis=0)) / (emb.std(axis=0) + 1e-8)
    return z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)


def read_trials(path: Path) -> list[tuple[int, str, str]]:
    """VoxCeleb-format trials ``label enrol test`` -> [(label, enrol, test)]."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        f = line.split()
        if len(f) != 3 or f[0] not in ("0", "1"):
            raise SSPSError(f"{path}:{n}: expected '<0|1> <enrol> <test>', got {line!r}")
        out.append((int(f[0]), f[1], f[2]))
    return out


def trial_eer(trials: list[tuple[int, str, str]], emb: np.ndarray, index: dict[str, int]) -> float:
    """Cosine-scored EER of ``trials`` with row-normalised embeddings (N, D) indexed by utterance id."""
    a = np.array([index[t[1]] for t in trials])
    b = np.array([index[t[2]] for t in trials])
    scores = np.sum(emb[a] * emb[b], axis=1)
    return eer(scores, np.array([t[0] for t in trials]))


def nearest_neighbour_rates(emb: np.ndarray, speakers: list[str], sessions: list[str]) -> tuple[float, float]:
    """Fraction of rows whose cosine nearest neighbour (itself excluded) shares the session / the speaker."""
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argmax(sim, axis=1)
    spk, ses = np.array(speakers), np.array([f"{s}/{t}" for s, t in zip(speakers, sessions, strict=True)])
    return float(np.mean(ses[nn] == ses)), float(np.mean(spk[nn] == spk))


def corpus_stats(corpus: str | Path) -> dict:
    """Embed every utterance of CORPUS (train, dev and test), score its trial lists, write stats.json."""
    corpus = Path(corpus)
    start = time.perf_counter()
    rows = []
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        if name == "dev.tsv" and not (corpus / name).is_file():
            continue  # corpora made before the dev split
        if not (corpus / name).is_file():
            raise SSPSError(f"{corpus / name}: not found; is {corpus} a corpus from `ssps data synth`?")
        m = read_manifest(corpus / name)
        rows += [(r, m.resolve(i)) for i, r in enumerate(m.rows)]
    emb = np.stack([crude_embedding(*_read(path)) for _, path in rows])
    emb = normalise(emb)
    index = {r.utterance: i for i, (r, _) in enumerate(rows)}
    result: dict = {
        "embedding": f"log-mel ({N_MELS}) mean + std, standardised, cosine",
        "utterances": len(rows),
    }
    for trials_path in sorted((corpus / "trials").glob("*.txt")):
        trials = read_trials(trials_path)
        result[f"eer_{trials_path.stem}"] = round(trial_eer(trials, emb, index), 4)
        result[f"trials_{trials_path.stem}"] = len(trials)
    same_session, same_speaker = nearest_neighbour_rates(
        emb, [r.speaker for r, _ in rows], [r.session for r, _ in rows]
    )
    result["nn_same_session"] = round(same_session, 4)
    result["nn_same_speaker"] = round(same_speaker, 4)
    result["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_text(corpus / "stats.json", json.dumps(result, indent=2) + "\n")
    return result


def _sibling_embeddings(arg: tuple[Voice, int, str, int]) -> np.ndarray:
    """(2, 1 + n, K, D) crude embeddings of a voice and its ``n`` candidate siblings, K utterances each.

    [0]: clean speech; [1]: the same speech, each utterance under its own random condition.
    """
    voice, n, channels, seed = arg
    texts = sentences()
    clean, recorded = [], []
    for ident in [Identity(voice.database, voice), *sibling_candidates(voice, n)]:
        for k in range(SIBLING_UTTERANCES):
            rng = np.random.default_rng([seed, zlib.crc32(ident.name.encode()), k, 7])
            cond = draw_condition(rng, channels)
            wav = synthesize(ident, texts[rng.integers(len(texts))])
            clean.append(crude_embedding(wav))
            recorded.append(crude_embedding(apply_condition(wav, cond, cond.build(), rng, codec=False)))
    return np.stack([clean, recorded]).reshape(2, 1 + n, SIBLING_UTTERANCES, -1)


def _pair_eer(x: np.ndarray, y: np.ndarray) -> float:
    """EER of telling two sets of normalised embeddings (K, D) apart: within-set pairs vs cross pairs."""
    iu = np.triu_indices(len(x), 1)
    target = np.concatenate([(x @ x.T)[iu], (y @ y.T)[iu]])
    non = (x @ y.T).ravel()
    return eer(np.concatenate([target, non]), np.r_[np.ones(len(target)), np.zeros(len(non))])


def sibling_separability(voices: list[Voice], n: int, channels: str, seed: int, map_fn) -> list[dict]:
    """Measure each candidate sibling against its voice; keep it only when clearly apart (see SIBLING_RULE).

    Args:
        voices: base voices.
        n: candidate siblings per voice (:func:`ssps.corpus.voices.sibling_candidates`).
        channels: condition distribution for the ``conditioned`` measurement.
        seed: corpus seed.
        map_fn: ``map_fn(fn, items) -> list`` (lets the caller run it in parallel).

    Returns:
        One dict per candidate: name, base, pitch, formant, tempo, eer, eer_conditioned, reference_eer,
        reference_eer_conditioned and kept.
    """
    # (V, 2, 1 + n, K, D): voice, clean/conditioned, voice/siblings, utterance, dimension
    embs = np.stack(map_fn(_sibling_embeddings, [(v, n, channels, seed) for v in voices]))
    for m in range(2):  # standardise clean and conditioned sets separately
        embs[:, m] = normalise(embs[:, m].reshape(-1, embs.shape[-1])).reshape(embs[:, m].shape)
    report = []
    for i, voice in enumerate(voices):
        other = (i + 1) % len(voices)
        ref = [_pair_eer(embs[i, m, 0], embs[other, m, 0]) if other != i else float("nan") for m in range(2)]
        for c, ident in enumerate(sibling_candidates(voice, n), start=1):
            e = [_pair_eer(embs[i, m, 0], embs[i, m, c]) for m in range(2)]
            report.append(
                {"name": ident.name, "base": voice.database, "pitch": ident.pitch, "formant": ident.formant,
                 "tempo": ident.tempo, "eer": round(e[0], 4), "eer_conditioned": round(e[1], 4),
                 "reference_eer": round(ref[0], 4), "reference_eer_conditioned": round(ref[1], 4),
                 "kept": bool(e[0] < SIBLING_MAX_EER)}
            )  # fmt: skip
    return report


def _read(path: Path) -> tuple[np.ndarray, int]:
    try:
        wav, rate = sf.read(path, dtype="float32")
    except (OSError, RuntimeError) as e:
        raise SSPSError(f"{path}: cannot read audio ({e})") from None
    return (wav.mean(axis=1) if wav.ndim > 1 else wav), rate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="channel-effect statistics of a corpus (label-free log-mel embedding)")
    p.add_argument("corpus", help="folder written by `ssps data synth` (train.tsv, test.tsv, trials/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = corpus_stats(args.corpus)
    for key, value in result.items():
        print(f"{key}: {value}")
    print(f"wrote {Path(args.corpus) / 'stats.json'}")
    return 0
