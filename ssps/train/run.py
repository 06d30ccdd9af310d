"""One training run's state: model, optimizer, schedules, SSPS sampler, loaders and checkpoints.

:class:`Run` builds everything from the config and offers the hooks the loop calls
(:mod:`ssps.train.loop`); :mod:`ssps.train.trainer` drives it over the epochs.
"""

from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ssps import dist
from ssps.checkpoint import save_checkpoint
from ssps.config import Config
from ssps.data.dataset import EpochBatchSampler, TrainDataset, collate, usable_rows
from ssps.data.labels import speaker_table
from ssps.data.manifest import read_manifest
from ssps.data.views import CropSpec, Views
from ssps.errors import SSPSError
from ssps.methods import build_method, method_uses_labels
from ssps.train import schedules
from ssps.train.log import MetricsWriter
from ssps.train.restore import restore
from ssps.train.steps import STEPS
from ssps.train.sync_batchnorm import convert_sync_batchnorm
from ssps.utils.files import sha256
from ssps.utils.hardware import amp_enabled

log = logging.getLogger("ssps")


def build_views(cfg: Config, train_paths: list[str], train_audio=None) -> Views:
    """Crops and augmentation; ``train_audio`` (an :class:`ssps.data.audio_store.AudioStore`) serves the
    babble talkers from RAM."""
    from ssps.augment.compose import Augmenter

    m = cfg.method
    if m.name == "simclr":
        groups = [CropSpec(2, m.simclr.crop_seconds)]
    elif m.name == "supervised":
        groups = [CropSpec(1 + (m.supervised.instance_weight > 0), m.supervised.crop_seconds)]  # 2: NT-Xent
    else:
        groups = [
            CropSpec(m.dino.global_crops, m.dino.global_seconds),
            CropSpec(m.dino.local_crops, m.dino.local_seconds),
        ]
    augment = None
    if cfg.data.augment.strategy != "none":
        augment = Augmenter(
            cfg.data.augment,
            sample_rate=cfg.features.sample_rate,
            train_paths=train_paths,
            seed=cfg.train.seed,
            train_audio=train_audio,
        )
    reference = cfg.ssps.reference_seconds if cfg.ssps.enabled else 0.0
    return Views(groups, augment, reference, cfg.features.sample_rate)


def build_optimizer(cfg: Config, method: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = method.param_groups(o.weight_decay)  # every method provides its groups (ssps.methods)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    raise SSPSError(f"optim.name={o.name!r}: expected adam, adamw or sgd")


class Run:
    """Everything one training run holds: model, optimizer, schedules, SSPS sampler, checkpoints."""

    def __init__(self, cfg: Config, out_dir: Path, device: torch.device):
        self.cfg, self.out_dir, self.device = cfg, out_dir, device
        self.log = log
        self.metrics = MetricsWriter(out_dir)
        torch.manual_seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)

        if not cfg.data.train_manifest:
            raise SSPSError(
                "data.train_manifest is empty: set it in the config or with data.train_manifest=PATH"
            )
        self.manifest = read_manifest(cfg.data.train_manifest)
        # Stored in every checkpoint, so `ssps info` can tell which data a model was trained on.
        self.provenance = {
            "train_manifest": str(cfg.data.train_manifest),
            "train_manifest_sha256": sha256(cfg.data.train_manifest),
        }
        table = None  # the speaker table, only for the methods that train on the speaker column
        if method_uses_labels(cfg.method.name):
            if cfg.ssps.enabled:
                raise SSPSError(
                    f"ssps.enabled=true: SSPS replaces SSL positives; method.name={cfg.method.name} has none"
                )
            table = speaker_table(self.manifest)
            self.provenance["num_speakers"] = table.num_classes
        self.labels = table.labels if table else None  # (N,) class of each manifest row
        self.rows, self.skipped = usable_rows(self.manifest, cfg.data.min_duration, cfg.data.check_files)
        paths = [str(self.manifest.resolve(i)) for i in self.rows]
        store = self._build_store()
        self.dataset = TrainDataset(
            self.manifest,
            build_views(cfg, paths, store),
            cfg.train.seed,
            cfg.features.sample_rate,
            self.rows,
            store,
        )
        self.steps_per_epoch = cfg.train.steps_per_epoch or len(self.rows) // cfg.train.batch_size
        if self.steps_per_epoch == 0:
            raise SSPSError(
                f"train.batch_size={cfg.train.batch_size} is larger than the "
                f"{len(self.rows)} usable utterances in {cfg.data.train_manifest}"
            )

        self.method = build_method(cfg, table.num_classes if table else None).to(device)
        if cfg.train.sync_batchnorm and dist.world_size() > 1:
            self.method = convert_sync_batchnorm(self.method, device)
        if self.labels is not None:
            self.steps = STEPS[cfg.method.name](self.method, cfg, self.labels, self.steps_per_epoch)
        else:
            self.steps = STEPS[cfg.method.name](self.method, cfg)
        forward = self.steps.forward_module
        self.model = (
            nn.parallel.DistributedDataParallel(
                forward, device_ids=[device] if device.type == "cuda" else None
            )
            if dist.world_size() > 1
            else forward
        )
        self.optimizer = build_optimizer(cfg, self.method)
        self.use_amp = amp_enabled(cfg.train.amp, device)
        if cfg.train.amp != "none" and not self.use_amp:
            log.warning("train.amp=%s needs CUDA (bf16: or a bf16 CPU); float32 on %s", cfg.train.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and cfg.train.amp == "fp16")
        self.lr = schedules.learning_rate(cfg, self.steps_per_epoch)
        self.momentum = schedules.teacher_momentum(cfg, self.steps_per_epoch)
        self.teacher_temperature = cfg.method.dino.teacher_temperature
        self.speakers = self.sessions = None
        self.sampler = self._build_sampler() if cfg.ssps.enabled else None
        self.queue_ready = False
        self.queues_restored = False  # queues and clusters came from the checkpoint (ssps.save_queues)
        self.step = 0
        self.epoch = 0

    def _build_store(self):
        """The training audio in shared RAM (data.cache_gb): decoded by the main rank, mapped by all."""
        from ssps.data.audio_store import build_store

        cfg = self.cfg
        args = (self.manifest, self.rows, cfg.features.sample_rate, cfg.data.cache_gb)
        store = build_store(*args) if dist.is_main() else None
        dist.barrier()
        return store if dist.is_main() else build_store(*args)

    def _build_sampler(self):
        from ssps.sampling.ssps import SSPSSampler, uses_labels, uses_sessions

        cfg = self.cfg
        # Labels and metadata only for diagnostics (self.speakers / self.sessions, logged, never drawn
        # from) and for the samplers that are named as using them.
        speakers = sessions = None
        if self.manifest.has_speakers:
            speakers = torch.tensor(self.manifest.labels("speaker")[1])
        if self.manifest.has_sessions:
            sessions = torch.tensor(self.manifest.labels("session")[1])
        if (cfg.ssps.exclude_same_session or cfg.ssps.session_pooling) and sessions is None:
            raise SSPSError(
                f"ssps.exclude_same_session / ssps.session_pooling need a session column in "
                f"{cfg.data.train_manifest}"
            )
        if uses_labels(cfg.ssps) and speakers is None:
            raise SSPSError(
                f"ssps.sampling=oracle / ssps.oracle_filter need speaker labels in {cfg.data.train_manifest}"
            )
        embed_dim = cfg.encoder.embed_dim
        pos_dim = cfg.method.simclr.projector_dims[-1] if cfg.method.simclr.projector_dims else embed_dim
        sampler = SSPSSampler(
            cfg.ssps,
            num_items=len(self.manifest),
            ref_dim=embed_dim,
            pos_shape=self.steps.positive_shape(pos_dim),
            speaker_ids=speakers if uses_labels(cfg.ssps) else None,
            session_ids=sessions if uses_sessions(cfg.ssps) else None,
            seed=cfg.train.seed,
        )
        self.speakers, self.sessions = speakers, sessions
        return sampler.to(self.device)

    # -- hooks called by the loop ------------------------------------------------------------------------
    def autocast(self):
        if not self.use_amp:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.train.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def before_optimizer_step(self, epoch: int) -> None:
        if self.cfg.optim.clip_grad > 0:  # every method clips per parameter (ssps.methods)
            self.method.clip_gradients(self.cfg.optim.clip_grad)
        if self.cfg.method.name == "dino" and epoch < self.cfg.method.dino.freeze_last_layer_epochs:
            for p in self.method.last_layer_parameters():
                p.grad = None

    def after_optimizer_step(self, it: int) -> None:
        if hasattr(self.method, "update_teacher"):
            self.method.update_teacher(float(self.momentum[it]))

    def cluster_diagnostics(self) -> dict[str, float]:
        from ssps.sampling.diagnostics import cluster_diagnostics

        if self.speakers is None or self.sampler.assignments is None:
            return {}
        return cluster_diagnostics(self.sampler.assignments, self.speakers, self.sessions)

    def batch_diagnostics(self, index: torch.Tensor, drawn) -> dict[str, float]:
        from ssps.sampling.diagnostics import sampling_diagnostics

        return sampling_diagnostics(index, drawn.source_indices, drawn.found, self.speakers, self.sessions)

    # -- checkpoints -------------------------------------------------------------------------------------
    def train_state(self, epoch_done: bool) -> dict:
        state = {
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch_done": epoch_done,
            "queue_ready": self.queue_ready,
            "torch_rng": torch.get_rng_state(),
        }
        if self.sampler is not None and self.cfg.ssps.save_queues:
            state["sampler"] = self.sampler.state_dict()
        return state

    def save(self, epoch: int, epoch_done: bool) -> None:
        """Write latest.pt (all state, for resume); at epoch ends also epoch_NNNN.pt (embedder only)."""
        if dist.is_main():
            embedder = self.method.eval_embedder().state_dict()
            if epoch_done:
                save_checkpoint(
                    self.out_dir / f"epoch_{epoch:04d}.pt",
                    self.cfg,
                    embedder,
                    epoch + 1,
                    self.step,
                    provenance=self.provenance,
                )
                self._prune_epoch_checkpoints()
            save_checkpoint(
                self.out_dir / "latest.pt",
                self.cfg,
                embedder,
                epoch + int(epoch_done),
                self.step,
                self.train_state(epoch_done),
                self.provenance,
            )
        dist.barrier()

    def _prune_epoch_checkpoints(self) -> None:
        keep = self.cfg.train.keep_checkpoints
        files = sorted(self.out_dir.glob("epoch_*.pt"))
        for old in files[: max(len(files) - keep, 0)] if keep > 0 else []:
            old.unlink()

    def restore(self, path: Path, weights_only: bool = False) -> None:
        """Resume from ``path``, or continue a base from it (``weights_only``): see ssps.train.restore."""
        restore(self, path, weights_only)

    def loader(self, epoch: int, start_step: int) -> DataLoader:
        batches = EpochBatchSampler(
            self.rows,
            self.cfg.train.batch_size,
            self.cfg.train.seed,
            epoch,
            dist.rank(),
            dist.world_size(),
            self.steps_per_epoch,
            start_step,
        )
        workers = self.cfg.data.num_workers
        return DataLoader(
            self.dataset,
            batch_sampler=batches,
            collate_fn=collate,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )
