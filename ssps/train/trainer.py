"""``ssps train``: builds everything a run needs from the config, then runs the epochs.

One code path for one process and for DDP (``torchrun --nproc_per_node N -m ssps train ...``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ssps import dist
from ssps.checkpoint import checkpoint_config, load_checkpoint
from ssps.config import Config, dump_config
from ssps.errors import PeerLostError, SSPSError
from ssps.train import schedules
from ssps.train.log import setup_logging
from ssps.train.loop import train_one_epoch
from ssps.train.run import Run

log = logging.getLogger("ssps")


# Keys that may differ between a run and the config it resumes with (they do not change the results).
RESUMABLE_CHANGES = {
    "train.epochs",  # and train.schedule_epochs: allowed only when no schedule value changes (checked)
    "train.schedule_epochs",
    "train.log_every",
    "train.threads",
    "data.num_workers",
    "data.cache_gb",  # where the audio comes from, not what it is (crops are bit-identical)
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
        change = schedules.schedule_change(stored, cfg, run.steps_per_epoch)
        if change:
            raise SSPSError(
                f"--resume: train.epochs / train.schedule_epochs differ from {latest} and change the "
                f"schedule ({change}); keep them, or set train.schedule_epochs to the stored run's length"
            )
        run.restore(latest)
        log.info("resumed from %s at epoch %d, step %d", latest, run.epoch, run.step)
    elif cfg.train.init:
        init = Path(cfg.train.init)
        run.restore(init, weights_only=True)
        log.info("initialised from %s (epoch %d, step %d)", init, run.epoch, run.step)
        base = checkpoint_config(load_checkpoint(init), init)
        change = schedules.schedule_change(base, cfg, run.steps_per_epoch, run.step)
        if change:
            log.warning(
                "train.init %s was trained on another schedule (%s): set the base's train.schedule_epochs "
                "to this run's train.epochs so the continuation resumes the base's schedule",
                init,
                change,
            )
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
        raise PeerLostError(
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
        # Mid-epoch with restored queues, the clusters are those the epoch was drawing from; re-clustering
        # on queues the epoch has half rewritten would change every later draw.
        resumed_mid_epoch = start_step > 0 and run.queues_restored
        if phase == "on" and not resumed_mid_epoch:
            run.sampler.cluster(seed=cfg.train.seed + epoch)
        state = train_one_epoch(
            run, epoch, phase, run.loader(epoch, start_step), start_step, stop_after_steps
        )
        if stop_after_steps and run.step >= stop_after_steps:
            if run.step - epoch * run.steps_per_epoch < run.steps_per_epoch:
                run.save(epoch, epoch_done=False)
                log.info("stopped after step %d (--stop-after-steps)", run.step)
                break
        if phase in ("fill", "on") and (start_step == 0 or resumed_mid_epoch):
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
