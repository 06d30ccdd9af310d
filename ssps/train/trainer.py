"""``ssps train``: builds everything a run needs from the config, then runs the epochs.

One code path for one process and for DDP (``torchrun --nproc_per_node N -m ssps train ...``).
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
from ssps.config import Config, dump_config
from ssps.data.dataset import EpochBatchSampler, TrainDataset, collate, usable_rows
from ssps.data.manifest import read_manifest
from ssps.data.views import CropSpec, Views
from ssps.errors import SSPSError
from ssps.methods import build_method
from ssps.train import schedules
from ssps.train.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from ssps.train.log import MetricsWriter, setup_logging
from ssps.train.loop import train_one_epoch
from ssps.train.steps import STEPS

log = logging.getLogger("ssps")


def build_views(cfg: Config, train_paths: list[str]) -> Views:
    from ssps.augment.compose import Augmenter

    m = cfg.method
    if m.name == "simclr":
        groups = [CropSpec(2, m.simclr.crop_seconds)]
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
        self.rows, self.skipped = usable_rows(self.manifest, cfg.data.min_duration, cfg.data.check_files)
        paths = [str(self.manifest.resolve(i)) for i in self.rows]
        self.dataset = TrainDataset(
            self.manifest, build_views(cfg, paths), cfg.train.seed, cfg.features.sample_rate, self.rows
        )
        self.steps_per_epoch = cfg.train.steps_per_epoch or len(self.rows) // cfg.train.batch_size
        if self.steps_per_epoch == 0:
            raise SSPSError(
                f"train.batch_size={cfg.train.batch_size} is larger than the "
                f"{len(self.rows)} usable utterances in {cfg.data.train_manifest}"
            )

        self.method = build_method(cfg).to(device)
        if cfg.train.sync_batchnorm and dist.world_size() > 1:
            self.method = nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
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
        self.use_amp = cfg.train.amp != "none" and device.type == "cuda"
        if cfg.train.amp != "none" and not self.use_amp:
            log.warning("train.amp=%s needs CUDA; training in float32 on %s", cfg.train.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and cfg.train.amp == "fp16")
        self.lr = schedules.learning_rate(cfg, self.steps_per_epoch)
        self.momentum = schedules.teacher_momentum(cfg, self.steps_per_epoch)
        self.teacher_temperature = cfg.method.dino.teacher_temperature
        self.speakers = self.sessions = None
        self.sampler = self._build_sampler() if cfg.ssps.enabled else None
        self.queue_ready = False
        self.step = 0
        self.epoch = 0

    def _build_sampler(self):
        from ssps.sampling.ssps import SSPSSampler

        cfg = self.cfg
        speakers = sessions = None
        if self.manifest.has_speakers:
            speakers = torch.tensor(self.manifest.labels("speaker")[1])
        if self.manifest.has_sessions:
            sessions = torch.tensor(self.manifest.labels("session")[1])
        if cfg.ssps.exclude_same_session and sessions is None:
            raise SSPSError(f"ssps.exclude_same_session needs a session column in {cfg.data.train_manifest}")
        if cfg.ssps.sampling == "oracle" and speakers is None:
            raise SSPSError(f"ssps.sampling=oracle needs speaker labels in {cfg.data.train_manifest}")
        embed_dim = cfg.encoder.embed_dim
        pos_dim = cfg.method.simclr.projector_dims[-1] if cfg.method.simclr.projector_dims else embed_dim
        sampler = SSPSSampler(
            cfg.ssps,
            num_items=len(self.manifest),
            ref_dim=embed_dim,
            pos_shape=self.steps.positive_shape(pos_dim),
            speaker_ids=speakers,
            session_ids=sessions,
            seed=cfg.train.seed,
        )
        self.speakers, self.sessions = speakers, sessions
        return sampler.to(self.device)

    # -- hooks called by the loop ------------------------------------------------------------------------
    def autocast(self):
        if not self.use_amp:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.train.amp == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)

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
                    self.out_dir / f"epoch_{epoch:04d}.pt", self.cfg, embedder, epoch + 1, self.step
                )
                self._prune_epoch_checkpoints()
            save_checkpoint(
                self.out_dir / "latest.pt",
                self.cfg,
                embedder,
                epoch + int(epoch_done),
                self.step,
                self.train_state(epoch_done),
            )
        dist.barrier()

    def _prune_epoch_checkpoints(self) -> None:
        keep = self.cfg.train.keep_checkpoints
        files = sorted(self.out_dir.glob("epoch_*.pt"))
        for old in files[: max(len(files) - keep, 0)] if keep > 0 else []:
            old.unlink()

    def restore(self, path: Path, weights_only: bool = False) -> None:
        """Resume from ``path`` (all state), or take only its model weights (``weights_only``: train.init)."""
        ckpt = load_checkpoint(path, map_location=self.device)
        train = ckpt.get("train")
        if train is None and weights_only:
            self._init_embedders(path, ckpt)
            self.epoch, self.step = ckpt["epoch"], ckpt["epoch"] * self.steps_per_epoch
            return
        if train is None:
            raise SSPSError(f"{path}: holds no training state (an embedder-only checkpoint); use latest.pt")
        try:
            self.method.load_state_dict(train["method"])
        except RuntimeError as e:
            raise SSPSError(
                f"{path}: model weights do not fit this config ({str(e).splitlines()[0][:160]})"
            ) from None
        if weights_only:
            self.epoch, self.step = ckpt["epoch"], ckpt["epoch"] * self.steps_per_epoch
            return
        self.optimizer.load_state_dict(train["optimizer"])
        self.scaler.load_state_dict(train["scaler"])
        torch.set_rng_state(train["torch_rng"].cpu())
        self.epoch, self.step = ckpt["epoch"], ckpt["step"]
        if self.sampler is not None and "sampler" in train:
            self.sampler.load_state_dict(train["sampler"])
            self.queue_ready = train["queue_ready"]

    def _init_embedders(self, path: Path, ckpt: dict) -> None:
        """Initialise from an embedder-only checkpoint (an epoch or averaged one): the encoder weights go into
        every embedder the method holds (DINO: student and teacher); heads and projectors start fresh."""
        embedders = {id(e): e for e in (self.method.eval_embedder(), self.method.reference_encoder())}
        student = getattr(self.method, "student", None)
        if isinstance(student, nn.ModuleDict) and "embedder" in student:
            embedders[id(student["embedder"])] = student["embedder"]
        for embedder in embedders.values():
            try:
                embedder.load_state_dict(ckpt["embedder"])
            except RuntimeError as e:
                msg = str(e).splitlines()[0][:160]
                raise SSPSError(f"{path}: embedder weights do not fit this config ({msg})") from None
        log.warning("initialised the encoder from embedder-only %s; heads and projectors start fresh", path)

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


# Keys that may differ between a run and the config it resumes with (they do not change the results).
RESUMABLE_CHANGES = {
    "train.epochs",
    "train.log_every",
    "train.threads",
    "data.num_workers",
    "data.val_trials",
    "data.val_root",
    "data.val_max_trials",
    "train.validate_every",
    "train.nan_policy",  # switching to 'skip' is how a run stopped by a NaN loss gets past the bad batch
    "train.dist_timeout",
}


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys


def validate(run: Run) -> dict[str, float]:
    """EER / minDCF of the current evaluation embedder on (a subset of) the validation trials."""
    from ssps.eval.commands import evaluate

    cfg = run.cfg
    embedder = run.method.eval_embedder()
    was_training = embedder.training
    root = cfg.data.val_root or Path(cfg.data.val_trials).parent
    results = evaluate(
        embedder.eval(),
        cfg.data.val_trials,
        root,
        max_trials=cfg.data.val_max_trials,
        device=run.device,
        progress=False,
    )
    embedder.train(was_training)
    return {"eer": results["eer"], "min_dcf_0.01": results["min_dcf_0.01"], "trials": results["n_trials"]}


def train(cfg: Config, out_dir: str | Path, resume: bool = False, stop_after_steps: int = 0) -> Path:
    """Run (or resume) training; returns the path of the latest checkpoint."""
    from ssps.config import to_dict

    out_dir = Path(out_dir)
    device = dist.init(cfg.train.dist_timeout)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    latest = out_dir / "latest.pt"
    if resume:
        if not latest.is_file():
            raise SSPSError(f"--resume: {latest} does not exist (nothing to resume)")
        stored = checkpoint_config(load_checkpoint(latest), latest)
        changed = [k for k in _diff(to_dict(stored), to_dict(cfg)) if k not in RESUMABLE_CHANGES]
        if changed:
            raise SSPSError(f"--resume: config differs from {latest} in {', '.join(changed)}")
        if dist.is_main():
            for stale in out_dir.glob(".*.tmp"):  # left by a checkpoint write that was killed midway
                stale.unlink(missing_ok=True)
    elif latest.exists():
        raise SSPSError(f"{out_dir} already holds a run (latest.pt); pass --resume or choose another --out")
    setup_logging(out_dir)
    if dist.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out_dir / "config.yaml")

    run = Run(cfg, out_dir, device)
    if resume:
        run.restore(latest)
        log.info("resumed from %s at epoch %d, step %d", latest, run.epoch, run.step)
    elif cfg.train.init:
        run.restore(Path(cfg.train.init), weights_only=True)
        log.info("initialised from %s (epoch %d)", cfg.train.init, run.epoch)
    n_params = sum(p.numel() for p in run.method.eval_embedder().parameters())
    log.info(
        "%s + %s: %.2f M parameters, %d utterances (%d skipped), %d steps/epoch, %d ranks, device %s",
        cfg.method.name,
        cfg.encoder.name,
        n_params / 1e6,
        len(run.rows),
        sum(run.skipped.values()),
        run.steps_per_epoch,
        dist.world_size(),
        device,
    )
    if run.sampler is not None:
        s = run.sampler
        log.info(
            "SSPS queues: %.3f MiB in all (reference %d x %d, positive %d x %s, %s)",
            s.memory_bytes() / 2**20,
            *s.reference.embeddings.shape,
            s.positive.embeddings.shape[0],
            "x".join(map(str, s.positive.embeddings.shape[1:])),
            cfg.ssps.queue_dtype,
        )

    try:
        _run_epochs(run, stop_after_steps)
    except RuntimeError as e:
        if not dist.is_peer_failure(e):
            raise
        # A rank died or the network failed: the collective raised (gloo: at once; else after the timeout).
        first = dist.failure_reason(e)
        raise SSPSError(
            f"rank {dist.rank()}: lost contact with the other ranks at step {run.step} ({first}); "
            f"{latest} holds the last complete checkpoint: restart with --resume"
        ) from None
    run.metrics.close()
    return latest


def _run_epochs(run: Run, stop_after_steps: int) -> None:
    cfg = run.cfg
    for epoch in range(run.epoch, cfg.train.epochs):
        start_step = run.step - epoch * run.steps_per_epoch
        phase = schedules.ssps_phase(cfg, epoch, run.queue_ready)
        if phase == "on":
            run.sampler.cluster(seed=cfg.train.seed + epoch)
        state = train_one_epoch(
            run, epoch, phase, run.loader(epoch, start_step), start_step, stop_after_steps
        )
        if stop_after_steps and run.step >= stop_after_steps:
            if run.step - epoch * run.steps_per_epoch < run.steps_per_epoch:
                run.save(epoch, epoch_done=False)
                log.info("stopped after step %d (--stop-after-steps)", run.step)
                break
        if phase in ("fill", "on") and start_step == 0:
            run.queue_ready = True  # a whole epoch has written every reference slot
        summary = {
            "epoch": epoch,
            "phase": phase,
            "loss": state.loss / max(state.steps, 1),
            "skipped_steps": state.skipped,
            "load_failures": len(state.failed),
            "seconds": round(state.seconds, 2),
            "utt_per_s": round(state.utterances / max(state.seconds, 1e-9), 2),
            **state.ssps,
        }
        if phase == "on":
            summary.update(run.cluster_diagnostics())
        if cfg.data.val_trials and (epoch + 1) % cfg.train.validate_every == 0:
            summary.update({f"val_{k}": v for k, v in validate(run).items()})
        if state.failed:
            log.warning(
                "epoch %d: %d samples could not be loaded and were replaced by other rows (e.g. %s)",
                epoch,
                len(state.failed),
                state.failed[0],
            )
        run.save(epoch, epoch_done=True)
        run.metrics.write("epoch", run.step, summary)
        log.info(
            "epoch %d [%s] %s",
            epoch,
            phase,
            " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in summary.items()
                if k not in ("epoch", "phase")
            ),
        )
        if stop_after_steps and run.step >= stop_after_steps:
            break
