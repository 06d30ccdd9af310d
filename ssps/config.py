"""Typed, frozen, closed configuration.

One YAML per experiment; ``key.sub=value`` overrides; unknown keys fail with the list of valid ones.
Derived values are computed where used, never written back.

>>> cfg = load_config(overrides=["train.batch_size=64", "encoder.name=ecapa_tdnn"])
>>> cfg.train.batch_size, cfg.encoder.name
(64, 'ecapa_tdnn')
>>> load_config(overrides=["train.batchsize=64"])
Traceback (most recent call last):
...
ssps.errors.ConfigError: unknown key 'train.batchsize'; valid keys: ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ssps.errors import ConfigError
from ssps.utils.typed_yaml import apply_overrides, from_dict, to_dict


@dataclass(frozen=True)
class FeaturesConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 40
    window: str = "hamming"  # hamming | hann


@dataclass(frozen=True)
class EncoderConfig:
    name: str = "tdnn"  # see ssps.encoders.ENCODERS
    embed_dim: int = 512
    channels: int = 0  # model width (ECAPA C, TDNN channels, ResNet base); 0 = the model's default


@dataclass(frozen=True)
class AugmentConfig:
    strategy: str = "both"  # none | both (always noise + reverb) | uniform (none/reverb/noise/both)
    noise_manifest: str = ""  # MUSAN-style noise manifest; empty = built-in coloured noise and babble
    rir_manifest: str = ""  # RIR manifest; empty = simulated rooms
    musan_speech_snr: tuple[float, float] = (13.0, 20.0)
    musan_noise_snr: tuple[float, float] = (0.0, 15.0)
    musan_music_snr: tuple[float, float] = (5.0, 15.0)


@dataclass(frozen=True)
class DataConfig:
    train_manifest: str = ""
    val_trials: str = ""  # trial list for the per-epoch validation EER; empty = none
    val_root: str = ""  # folder the validation trial paths are relative to
    val_max_trials: int = 2000
    num_workers: int = 0
    # GB of RAM for the training audio decoded once to int16 and shared by every worker and rank
    # (ssps.data.audio_store); 0, or a corpus that does not fit, reads only the crops from disk.
    cache_gb: float = 0.0
    min_duration: float = 0.5  # seconds; shorter utterances are skipped and counted
    check_files: str = (
        "header"  # header (read each file's header at start) | exists (stat only: huge corpora)
    )
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class SimCLRConfig:
    crop_seconds: float = 2.0
    temperature: float = 0.03
    projector_dims: tuple[int, ...] = ()  # empty = no projector (the paper's setting)
    same_view_negatives: bool = True  # NT-Xent over 2N (the reference); false = only the other positives


@dataclass(frozen=True)
class DINOConfig:
    global_crops: int = 2
    global_seconds: float = 4.0
    local_crops: int = 4
    local_seconds: float = 2.0
    head_hidden: int = 2048
    head_bottleneck: int = 256
    head_out: int = 65536
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    center_momentum: float = 0.9
    ema_start: float = 0.996
    ema_end: float = 1.0
    freeze_last_layer_epochs: int = 1


@dataclass(frozen=True)
class SupervisedConfig:
    crop_seconds: float = 2.0
    margin: float = 0.2  # additive angular margin m (radians)
    scale: float = 30.0  # logit scale s
    margin_warmup_start: int = 0  # epoch from which the margin rises from 0 (0 before it)
    margin_warmup_epochs: int = 0  # epochs of the linear rise to `margin`; 0 = full margin from the start
    # Sub-center AAM (Deng et al. 2020): K weight vectors per class, a class's cosine is the best of them, so
    # a class that merges several voices (noisy pseudo-speakers) need not pull them together. 1 = plain AAM.
    subcenters: int = 1
    # Label-free instance term beside the AAM (pseudo-label rounds): weight of NT-Xent between two crops of
    # each utterance, SimCLR's loss on the embeddings; 0 = off (one crop). It keeps every utterance apart
    # from the others, which a pseudo-speaker merging two voices would otherwise pull together.
    instance_weight: float = 0.0
    instance_temperature: float = 0.03


@dataclass(frozen=True)
class MethodConfig:
    name: str = "simclr"  # simclr | dino | supervised (uses the speaker column)
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)
    dino: DINOConfig = field(default_factory=DINOConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "step"  # step | cosine
    step_every_epochs: int = 5
    step_factor: float = 0.95
    warmup_epochs: int = 0
    min_lr: float = 1e-5
    clip_grad: float = 0.0  # per-parameter gradient-norm clip; 0 = off


@dataclass(frozen=True)
class SSPSConfig:
    enabled: bool = False
    start_epoch: int = 100  # SSPS is on from this epoch; the queues fill during the epoch before it
    sampling: str = "kmeans-repr"  # kmeans-repr | kmeans | knn | oracle (uses labels: upper bound)
    num_clusters: int = 25000  # K
    nearest_clusters: int = 1  # M; 0 = the anchor's own cluster
    kmeans_iterations: int = 10
    positive_queue_size: int = 25000  # Q'
    knn_neighbours: int = 3
    reference_seconds: float = 4.0
    exclude_same_session: bool = False  # needs a session column (recording metadata, not labels)
    session_pooling: bool = (
        False  # search (knn) and cluster session-mean reference embeddings (session column)
    )
    exclude_own_cluster: bool = False  # label-free: never draw from the anchor's own k-means cluster
    exclude_same_channel: bool = False  # label-free: never draw from the anchor's channel-fingerprint cluster
    channel_clusters: int = 0  # K of the fingerprint clustering (recordings); 0 = N / 8 (~7 utt. per video)
    loss_weight: float = 1.0  # weight of the SSPS loss; 1 - weight goes to the same-utterance loss
    # knn, label-free: draw only candidates that have the anchor among their own m nearest allowed entries
    # (mutual neighbours); anchors without one keep their same-utterance positive. 0 = off.
    mutual_neighbours: int = 0
    # knn, label-free: a candidate's margin is its cosine minus that of the anchor's margin_rank-th nearest
    # allowed queue entry (how far it stands out from the anchor's own background, as adaptive score
    # normalisation does for trial scores); only the share margin_keep of the batch's candidates with the
    # largest margins may be drawn, anchors left without one keep their same-utterance positive. 1 = all.
    margin_keep: float = 1.0
    margin_rank: int = 64  # queue entries, duplicates included (each utterance is in the queue ~2-3 times)
    # Reads SPEAKER LABELS (a diagnostic, never a self-supervised result): a drawn positive of another
    # speaker is dropped and the anchor keeps its same-utterance positive; what the wrong draws cost.
    oracle_filter: bool = False
    oracle_filter_share: float = 1.0  # share of the wrong draws dropped (each with this chance); 1 = all
    refresh_every_steps: int = 0  # re-cluster (or rebuild the knn index) every N steps; 0 = once per epoch
    # float16 | float32 | bfloat16 (the reference queue only; knn about 2x faster on a CPU with bfloat16)
    queue_dtype: str = "float16"
    dino_store: str = "bottleneck"  # bottleneck (256-d, logits recomputed) | logits
    save_queues: bool = (
        True  # queues and clusters in latest.pt: a resumed SSPS run equals an uninterrupted one
    )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    # Epochs the lr / weight-decay / teacher-momentum schedules span; 0 = train.epochs. A base trained with
    # epochs=80, schedule_epochs=100 is the first 80 epochs of the 100-epoch run its continuation finishes.
    schedule_epochs: int = 0
    batch_size: int = 256  # global batch, split across ranks
    steps_per_epoch: int = 0  # 0 = one pass over the manifest
    seed: int = 0
    amp: str = "none"  # none | bf16 (CUDA, or a CPU with native bfloat16) | fp16 (CUDA only)
    sync_batchnorm: bool = True  # BatchNorm over the global batch when distributed (the paper's setting)
    threads: int = 0  # torch threads per process; 0 = torch's default
    log_every: int = 10
    validate_every: int = 1  # epochs
    keep_checkpoints: int = 10  # epoch checkpoints kept for averaging
    nan_policy: str = "stop"  # stop | skip (skip the offending batch)
    dist_timeout: float = 300.0  # seconds a rank waits in a collective for a dead or stuck peer
    checkpoint_every_steps: int = (
        0  # also write latest.pt every N steps (mid-epoch resume); 0 = epoch ends only
    )
    init: str = (
        ""  # start from this checkpoint's weights (e.g. a base model before SSPS); empty = random init
    )


@dataclass(frozen=True)
class Config:
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ssps: SSPSConfig = field(default_factory=SSPSConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    tree = apply_overrides(tree, overrides or [])
    try:
        return from_dict(Config, tree)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def config_from_dict(data: dict[str, Any]) -> Config:
    return from_dict(Config, data)


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from ssps.utils.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
