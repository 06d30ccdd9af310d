"""SimCLR and DINO on a tiny TDNN: shapes, one optimiser step, the EMA teacher, the head and the centre."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ssps.config import load_config
from ssps.errors import SSPSError
from ssps.methods import METHODS, build_method
from ssps.methods.dino import DINO
from ssps.methods.ema import cosine_momentum, ema_update
from ssps.methods.heads import DINOHead
from ssps.methods.simclr import SimCLR
from ssps.methods.supervised import Supervised

torch.set_num_threads(1)

TINY = [
    "encoder.name=tdnn",
    "encoder.channels=32",
    "encoder.embed_dim=64",
    "method.dino.head_out=256",
    "method.dino.head_hidden=64",
    "method.dino.head_bottleneck=32",
]
B, N_GLOBAL, N_LOCAL = 4, 8000, 4000  # 0.5 s and 0.25 s at 16 kHz


def tiny(method: str, *overrides: str) -> nn.Module:
    torch.manual_seed(0)
    return build_method(load_config(overrides=[*TINY, f"method.name={method}", *overrides]), num_classes=5)


def waves(n: int, length: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, length, generator=g) for _ in range(n)]


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def train_step(method: nn.Module, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """One step of each method's training recipe (what the trainer's loop does)."""
    optimizer.zero_grad()
    if isinstance(method, DINO):
        globals_, locals_ = waves(2, N_GLOBAL, 1), waves(2, N_LOCAL, 2)
        teacher_logits, _ = method.teacher_forward(globals_)
        loss = method.loss(method(globals_, locals_), teacher_logits, 0.04)
    elif isinstance(method, Supervised):
        loss = method.loss(method(waves(1, N_GLOBAL, 1)[0]), torch.arange(B) % 5)
    else:
        anchors, positives = method(waves(2, N_GLOBAL, 1))
        loss = method.loss(anchors, positives)
    loss.backward()
    method.clip_gradients(3.0)
    optimizer.step()
    return loss


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_shares_the_trainer_api(name: str) -> None:
    method = tiny(name)
    trainable = method.trainable_parameters()
    groups = method.param_groups(1e-4)
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(trainable)
    assert {id(p) for p in grouped} == {id(p) for p in trainable}
    for group in groups:
        assert (group["weight_decay"] == 0.0) == (group["name"] == "no_decay")
        if group["name"] == "no_decay":
            assert all(p.ndim == 1 for p in group["params"])
    emb = method.eval_embedder().eval()
    with torch.no_grad():
        assert emb(torch.randn(2, N_GLOBAL)).shape == (2, 64)
        assert method.reference_encoder()(torch.randn(2, N_GLOBAL)).shape == (2, 64)
    method.train()
    loss = train_step(method, torch.optim.SGD(method.param_groups(1e-4), lr=0.1, momentum=0.9))
    assert loss.ndim == 0 and torch.isfinite(loss)
    method.on_step(1, 10)


def test_build_method_rejects_unknown_name() -> None:
    with pytest.raises(SSPSError, match="method.name: unknown method 'byol'; valid: dino, simclr"):
        build_method(load_config(overrides=[*TINY, "method.name=byol"]))


def test_bad_temperatures_are_user_errors() -> None:
    with pytest.raises(SSPSError, match="method.simclr.temperature"):
        tiny("simclr", "method.simclr.temperature=0")
    with pytest.raises(SSPSError, match="method.dino.teacher_temperature"):
        tiny("dino", "method.dino.teacher_temperature=-1")


def test_simclr_shapes_and_projector() -> None:
    method = tiny("simclr").train()
    out = method.embed(waves(2, N_GLOBAL, 0))
    assert [o.shape for o in out] == [(B, 64), (B, 64)]
    assert isinstance(method.projector, nn.Identity)
    projected = tiny("simclr", "method.simclr.projector_dims=[32,16]").train()
    assert [o.shape for o in projected.embed(waves(2, N_GLOBAL, 0))] == [(B, 16), (B, 16)]
    # The reference encoder skips the projector.
    assert projected.reference_encoder()(torch.randn(B, N_GLOBAL)).shape == (B, 64)


def test_simclr_step_changes_the_embedder() -> None:
    method = tiny("simclr").train()
    before = snapshot(method.embedder)
    train_step(method, torch.optim.Adam(method.trainable_parameters(), lr=1e-3))
    after = method.embedder.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k, v in method.embedder.named_parameters())


def test_grouped_crops_equal_separate_forwards() -> None:
    method = tiny("dino").eval()  # eval: BatchNorm does not depend on which crops share a batch
    globals_, locals_ = waves(2, N_GLOBAL, 3), waves(3, N_LOCAL, 4)
    with torch.no_grad():
        together = method.student_forward(globals_, locals_)
        alone = [method.student["head"](method.student["embedder"](x)) for x in [*globals_, *locals_]]
    assert len(together) == 5
    for a, b in zip(together, alone, strict=True):
        assert a.shape == (B, 256)
        assert torch.allclose(a, b, atol=1e-5)


def test_dino_teacher_outputs_and_teacher_logits_from_bottleneck() -> None:
    method = tiny("dino").train()
    logits, bottlenecks = method.teacher_forward(waves(2, N_GLOBAL, 5))
    assert [t.shape for t in logits] == [(B, 256)] * 2 and [z.shape for z in bottlenecks] == [(B, 32)] * 2
    assert not logits[0].requires_grad
    assert torch.allclose(bottlenecks[0].norm(dim=1), torch.ones(B), atol=1e-5)
    for t, z in zip(logits, bottlenecks, strict=True):
        assert torch.allclose(method.teacher_logits(z), t, atol=1e-6)
        # A float16 store costs little: logits are cosines in [-1, 1].
        assert torch.allclose(method.teacher_logits(z.half()), t, atol=2e-3)


def test_dino_step_changes_student_not_teacher_and_keeps_weight_g() -> None:
    method = tiny("dino").train()
    student, teacher = snapshot(method.student), {k: v.clone() for k, v in method.teacher.named_parameters()}
    optimizer = torch.optim.SGD(method.param_groups(5e-5), lr=0.1, momentum=0.9)
    for _ in range(2):
        train_step(method, optimizer)
    changed = [
        not torch.equal(student[k], p) for k, p in method.student.named_parameters() if p.requires_grad
    ]
    assert all(changed)
    assert all(torch.equal(teacher[k], p) for k, p in method.teacher.named_parameters())
    assert torch.equal(method.student["head"].weight_g, torch.ones(256, 1))
    assert torch.equal(method.teacher["head"].weight_g, torch.ones(256, 1))


def test_dino_frozen_last_layer_stays_while_the_rest_moves() -> None:
    method = tiny("dino").train()
    last = method.last_layer_parameters()
    groups = {g["name"]: g["params"] for g in method.param_groups(5e-5)}
    assert [id(p) for p in groups["last_layer"]] == [id(p) for p in last] and len(last) == 1
    before = last[0].detach().clone()
    optimizer = torch.optim.SGD(method.param_groups(5e-5), lr=0.1)
    optimizer.zero_grad()
    teacher_logits, _ = method.teacher_forward(waves(2, N_GLOBAL, 6))
    method.loss(method(waves(2, N_GLOBAL, 6), waves(2, N_LOCAL, 7)), teacher_logits, 0.04).backward()
    for p in last:  # what the trainer does during the first epoch
        p.grad = None
    optimizer.step()
    assert torch.equal(last[0], before)


def test_update_teacher_moves_teacher_toward_student() -> None:
    method = tiny("dino").train()
    train_step(method, torch.optim.SGD(method.param_groups(0.0), lr=0.5))
    s = dict(method.student.named_parameters())
    old = {k: p.detach().clone() for k, p in method.teacher.named_parameters()}
    gap_before = sum((old[k] - s[k]).norm() for k in s)
    assert gap_before > 0
    method.update_teacher(0.75)
    for k, t in method.teacher.named_parameters():
        assert torch.allclose(t, 0.75 * old[k] + 0.25 * s[k].detach(), atol=1e-6)
    gap_after = sum((t - s[k]).norm().item() for k, t in method.teacher.named_parameters())
    assert gap_after == pytest.approx(0.75 * gap_before.item(), rel=1e-4)
    # BatchNorm statistics are copied, not averaged.
    for (name, tb), sb in zip(method.teacher.named_buffers(), method.student.buffers(), strict=True):
        assert torch.equal(tb, sb), name
    method.update_teacher(1.0)
    assert all(torch.allclose(t, 0.75 * old[k] + 0.25 * s[k]) for k, t in method.teacher.named_parameters())


def test_dino_loss_updates_the_center_with_the_given_teacher_logits() -> None:
    method = tiny("dino").train()
    teacher_logits, _ = method.teacher_forward(waves(2, N_GLOBAL, 8))
    replaced = [t.flip(0) + 1.0 for t in teacher_logits]  # what SSPS would pass instead
    before = method.center.center.clone()
    method.loss(method(waves(2, N_GLOBAL, 8), []), replaced, 0.04)
    expected = 0.9 * before + 0.1 * torch.cat(replaced).mean(0, keepdim=True)
    assert torch.allclose(method.center.center, expected, atol=1e-6)
    method.loss(method(waves(2, N_GLOBAL, 8), []), teacher_logits, 0.04, update_center=False)
    assert torch.equal(method.center.center, expected)


def test_clip_gradients_bounds_each_parameter() -> None:
    method = tiny("simclr").train()
    anchors, positives = method(waves(2, N_GLOBAL, 9))
    (1e4 * method.loss(anchors, positives)).backward()
    norms = method.clip_gradients(0.5)
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert len(norms) == len(grads) and (norms > 0.5).any()
    for g, before in zip(grads, norms, strict=True):
        assert g.norm() <= 0.5 + 1e-4
        if before <= 0.5:
            assert g.norm() == pytest.approx(before.item(), rel=1e-5)


def test_dino_head_splits_into_bottleneck_and_last_layer() -> None:
    head = DINOHead(64, hidden=32, bottleneck=16, out=50)
    x = torch.randn(7, 64)
    z = head.bottleneck(x)
    assert torch.allclose(z.norm(dim=1), torch.ones(7), atol=1e-5)
    assert torch.allclose(head(x), head.last_layer(z))
    assert not head.weight_g.requires_grad
    # g = 1: every logit is a cosine, so |logit| <= 1.
    assert head(x).abs().max() <= 1.0 + 1e-5


def test_cosine_momentum_schedule() -> None:
    values = [cosine_momentum(s, 100, 0.996, 1.0) for s in range(0, 101, 10)]
    assert values[0] == pytest.approx(0.996) and values[-1] == pytest.approx(1.0)
    assert values[5] == pytest.approx(0.998)
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert cosine_momentum(150, 100, 0.996, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0, 0, 0.996, 1.0) == 1.0


def test_ema_update_rejects_different_modules() -> None:
    with pytest.raises(ValueError, match="same parameters"):
        ema_update(nn.Linear(3, 4), nn.Sequential(nn.Linear(3, 4)), 0.9)
    with pytest.raises(ValueError, match="momentum"):
        ema_update(nn.Linear(3, 4), nn.Linear(3, 4), 1.5)


def test_methods_are_registered_classes() -> None:
    assert METHODS.get("simclr") is SimCLR and METHODS.get("dino") is DINO


def test_dino_head_has_batchnorm_after_both_hidden_layers() -> None:
    """As the reference head: Linear -> BN -> GELU, Linear -> BN -> GELU, Linear (bottleneck)."""
    head = DINOHead(64, hidden=32, bottleneck=16, out=50)
    kinds = [type(m).__name__ for m in head.mlp]
    assert kinds == ["Linear", "BatchNorm1d", "GELU", "Linear", "BatchNorm1d", "GELU", "Linear"]
    # In training mode the hidden activations are normalised over the batch.
    head.train()
    x = 5.0 + 3.0 * torch.randn(64, 64)
    hidden = head.mlp[:2](x)
    assert torch.allclose(hidden.mean(0), torch.zeros(32), atol=1e-4)
