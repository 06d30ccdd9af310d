"""The training loop, read top to bottom:
schedule -> forward -> (SSPS) -> loss -> backward -> clip -> step -> EMA / queue update -> log.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ssps import dist
from ssps.errors import SSPSError
from ssps.sampling.channel import channel_statistics
from ssps.train.steps import reference_embeddings


class NonFiniteLoss(SSPSError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


@dataclass
class EpochState:
    """What one epoch accumulates for the log."""

    loss: float = 0.0
    steps: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # audio files replaced because they failed to load
    utterances: int = 0
    seconds: float = 0.0
    ssps: dict[str, float] = field(default_factory=dict)


def train_one_epoch(run, epoch: int, phase: str, loader, start_step: int, stop_after: int = 0) -> EpochState:
    """Train ``run`` (a :class:`ssps.train.trainer.Run`) for one epoch; returns the epoch's statistics.

    ``phase`` is the SSPS phase ('off', 'fill' or 'on'); ``stop_after`` > 0 stops at that global step.
    """
    cfg, method, steps, sampler = run.cfg, run.method, run.steps, run.sampler
    state = EpochState()
    ssps_sums: dict[str, float] = {}
    bar = tqdm(
        loader,
        desc=f"epoch {epoch} [{phase}]",
        disable=True if not dist.is_main() else None,
        leave=False,
        dynamic_ncols=True,
        initial=start_step,
        total=start_step + len(loader),
    )
    t0 = time.perf_counter()
    for batch in bar:
        it = run.step  # global step: every schedule is indexed by it
        for group in run.optimizer.param_groups:
            group["lr"] = float(run.lr[it]) * group.get("lr_scale", 1.0)
        state.failed += batch.get("failed", [])
        index = batch["index"].to(run.device)
        views = [v.to(run.device, non_blocking=True) for v in batch["views"]]

        with run.autocast():
            anchors, positives, stored = steps.forward(run.model, views, index)
            if phase == "on":
                # SSPS: a pseudo-positive from the queue replaces the same-utterance positive where found.
                drawn = sampler.sample(index, step=it)
                found = drawn.found.view(-1, *[1] * (positives.dim() - 1))
                pseudo = steps.from_stored(drawn.positives.to(positives.dtype))
                replaced = torch.where(found, pseudo, positives)
                loss = steps.loss(anchors, replaced, run.teacher_temperature)  # DINO's centre sees these
                terms = {"loss_ssps": loss.detach()}
                w = cfg.ssps.loss_weight
                if w < 1:  # optionally mixed with the same-utterance loss
                    same = steps.loss(anchors, positives, run.teacher_temperature, update_center=False)
                    terms["loss_same"] = same.detach()
                    loss = w * loss + (1 - w) * same
                for key, value in run.batch_diagnostics(index, drawn).items():
                    ssps_sums[key] = ssps_sums.get(key, 0.0) + value
            else:
                loss = steps.loss(anchors, positives, run.teacher_temperature, step=it)
                terms = {"loss_same": loss.detach()}

        # Decided on all ranks together: one rank skipping alone would leave the others waiting in the
        # gradient all-reduce and the queue all-gathers.
        finite = dist.all_true(bool(torch.isfinite(loss)))
        if not finite:
            detail = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            if cfg.train.nan_policy != "skip":
                raise NonFiniteLoss(f"non-finite loss at step {it} (epoch {epoch}): {detail}")
            run.optimizer.zero_grad(set_to_none=True)
            state.skipped += 1
            run.log.warning("skipped step %d: non-finite loss (%s)", it, detail)
        else:
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.unscale_(run.optimizer)
            run.before_optimizer_step(epoch)  # clipping, freezing DINO's last layer
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.after_optimizer_step(it)  # teacher EMA

        if phase in ("fill", "on") and finite:  # a skipped batch must not put NaN into the queues
            # Queues: the clean reference frame's embedding, and the positive the loss consumed.
            reference = batch["reference"].to(run.device)
            sampler.write_reference(index, reference_embeddings(method, reference))
            if sampler.needs_channel:  # label-free recording fingerprints (ssps.exclude_same_channel)
                sampler.write_channel(index, channel_statistics(reference, cfg.features.sample_rate))
            sampler.write_positive(index, stored.detach().float())
            if (
                phase == "on"
                and cfg.ssps.refresh_every_steps
                and (it + 1) % cfg.ssps.refresh_every_steps == 0
            ):
                sampler.cluster(seed=cfg.train.seed + it)

        run.step += 1
        state.steps += 1
        state.loss += loss.item() if math.isfinite(loss.item()) else 0.0
        state.utterances += len(index) * dist.world_size()
        elapsed = time.perf_counter() - t0
        if dist.is_main() and (run.step % cfg.train.log_every == 0):
            values = {
                "epoch": epoch,
                "loss": loss.item(),
                "lr": float(run.lr[it]),
                **{k: v.item() for k, v in terms.items()},
            }
            run.metrics.write("train", run.step, values)
        bar.set_postfix(loss=f"{loss.item():.3f}", utt_s=f"{state.utterances / max(elapsed, 1e-9):.1f}")
        if cfg.train.checkpoint_every_steps and run.step % cfg.train.checkpoint_every_steps == 0:
            run.save(epoch, epoch_done=False)
        if stop_after and run.step >= stop_after:
            break
    bar.close()
    state.seconds = time.perf_counter() - t0
    state.ssps = {k: v / max(state.steps, 1) for k, v in ssps_sums.items()}
    return state
