"""The SSL losses against independent plain-Python references, on toy optimisation, and at the edges."""

from __future__ import annotations

import math

import pytest
import torch

from ssps.methods.losses import DINOCenter, dino_loss, nt_xent

torch.set_num_threads(1)


def _unit(row: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in row))
    return [x / norm for x in row]


def _dot(u: list[float], v: list[float]) -> float:
    return sum(x * y for x, y in zip(u, v, strict=True))


def nt_xent_reference(anchors: torch.Tensor, positives: torch.Tensor, t: float, same_view: bool) -> float:
    """Loop form of NT-Xent: -log softmax of each embedding's partner among its candidates."""
    a = [_unit(r) for r in anchors.tolist()]
    p = [_unit(r) for r in positives.tolist()]
    n = len(a)
    losses = []
    if same_view:
        z = a + p
        for i in range(2 * n):
            partner = (i + n) % (2 * n)
            denominator = sum(math.exp(_dot(z[i], z[k]) / t) for k in range(2 * n) if k != i)
            losses.append(-math.log(math.exp(_dot(z[i], z[partner]) / t) / denominator))
    else:
        for rows, cols in ((a, p), (p, a)):
            for i in range(n):
                denominator = sum(math.exp(_dot(rows[i], cols[k]) / t) for k in range(n))
                losses.append(-math.log(math.exp(_dot(rows[i], cols[i]) / t) / denominator))
    return sum(losses) / len(losses)


def dino_reference(student: list[torch.Tensor], teacher: list[torch.Tensor], t: float) -> float:
    """Loop form of the DINO loss: mean over (teacher i, student j != i) of the batch-mean cross entropy."""
    pair_losses = []
    for i, q in enumerate(teacher):
        for j, s in enumerate(student):
            if i == j:
                continue
            rows = []
            for q_row, s_row in zip(q.tolist(), s.tolist(), strict=True):
                log_z = math.log(sum(math.exp(x / t) for x in s_row))
                rows.append(-sum(qk * (sk / t - log_z) for qk, sk in zip(q_row, s_row, strict=True)))
            pair_losses.append(sum(rows) / len(rows))
    return sum(pair_losses) / len(pair_losses)


@pytest.mark.parametrize("same_view", [True, False])
@pytest.mark.parametrize("temperature", [0.03, 0.5])
def test_nt_xent_matches_loop_reference(same_view: bool, temperature: float) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 5, generator=g, dtype=torch.float64)
    p = a + 0.5 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    got = nt_xent(a, p, temperature, same_view_negatives=same_view)
    assert got.item() == pytest.approx(nt_xent_reference(a, p, temperature, same_view), rel=1e-10)


def test_nt_xent_float32_close_to_reference_and_gather_is_identity_in_one_process() -> None:
    g = torch.Generator().manual_seed(1)
    a, p = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    got = nt_xent(a, p, 0.1)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(nt_xent_reference(a, p, 0.1, True), rel=1e-5)
    assert torch.equal(got, nt_xent(a, p, 0.1, gather=False))


@pytest.mark.parametrize("same_view", [True, False])
def test_nt_xent_symmetric_in_anchors_and_positives(same_view: bool) -> None:
    g = torch.Generator().manual_seed(2)
    a, p = (
        torch.randn(7, 4, generator=g, dtype=torch.float64),
        torch.randn(7, 4, generator=g, dtype=torch.float64),
    )
    assert nt_xent(a, p, 0.2, same_view_negatives=same_view).item() == pytest.approx(
        nt_xent(p, a, 0.2, same_view_negatives=same_view).item(), rel=1e-12
    )


def test_nt_xent_detached_positives_send_gradient_to_anchors_only() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(5, 8, generator=g, requires_grad=True)
    p = torch.randn(5, 8, generator=g)
    loss = nt_xent(a, p.detach(), 0.1)
    loss.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    assert loss.item() == pytest.approx(nt_xent(a.detach(), p, 0.1).item())


def test_nt_xent_gradients_finite_at_low_temperature_and_identical_pairs() -> None:
    a = torch.randn(16, 32, requires_grad=True)
    loss = nt_xent(a, a.detach().clone(), 0.01)  # perfect positives: a softmax close to one-hot
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()
    half = torch.randn(16, 32, dtype=torch.float16, requires_grad=True)
    loss = nt_xent(half, torch.randn(16, 32, dtype=torch.float16), 0.03)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(half.grad.float()).all()


def test_nt_xent_temperature_effect() -> None:
    g = torch.Generator().manual_seed(4)
    a = torch.randn(32, 16, generator=g)
    aligned = a + 0.05 * torch.randn(32, 16, generator=g)
    # Positives nearer than any negative: a colder softmax concentrates on them (loss -> 0) ...
    cold, warm = nt_xent(a, aligned, 0.03), nt_xent(a, aligned, 1.0)
    assert cold < 0.01 < warm
    # ... while for unrelated pairs a cold softmax punishes the nearest negative hard.
    unrelated = torch.randn(32, 16, generator=g)
    assert nt_xent(a, unrelated, 0.03) > nt_xent(a, unrelated, 1.0)


def test_nt_xent_decreases_on_toy_embeddings() -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randn(16, 8, generator=g).requires_grad_(True)
    p = torch.randn(16, 8, generator=g).requires_grad_(True)
    opt = torch.optim.Adam([a, p], lr=0.05)
    first = nt_xent(a, p, 0.1).item()
    for _ in range(100):
        opt.zero_grad()
        loss = nt_xent(a, p, 0.1)
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_nt_xent_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="expected two"):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), 0.0)


def _dino_inputs(seed: int, n_global: int = 2, n_local: int = 3, b: int = 4, k: int = 6):
    g = torch.Generator().manual_seed(seed)
    student = [torch.randn(b, k, generator=g, dtype=torch.float64) for _ in range(n_global + n_local)]
    teacher = [
        torch.softmax(torch.randn(b, k, generator=g, dtype=torch.float64) / 0.5, -1) for _ in range(n_global)
    ]
    return student, teacher


@pytest.mark.parametrize(("n_global", "n_local"), [(2, 3), (2, 0), (1, 2)])
def test_dino_loss_matches_loop_reference(n_global: int, n_local: int) -> None:
    student, teacher = _dino_inputs(0, n_global, n_local)
    got = dino_loss(student, teacher, 0.1)
    assert got.item() == pytest.approx(dino_reference(student, teacher, 0.1), rel=1e-10)


def test_dino_loss_decreases_and_gradients_finite() -> None:
    student, teacher = _dino_inputs(2, b=8, k=32)
    logits = [s.float().clone().requires_grad_(True) for s in student]
    targets = [t.float() for t in teacher]
    opt = torch.optim.SGD(logits, lr=0.5)
    first = dino_loss(logits, targets, 0.1).item()
    for _ in range(50):
        opt.zero_grad()
        loss = dino_loss(logits, targets, 0.1)
        loss.backward()
        assert all(torch.isfinite(x.grad).all() for x in logits)
        opt.step()
    assert loss.item() < first


def test_dino_loss_rejects_mismatched_shapes() -> None:
    student, teacher = _dino_inputs(3)
    with pytest.raises(ValueError, match="same"):
        dino_loss([*student[:-1], torch.randn(4, 7, dtype=torch.float64)], teacher, 0.1)
    with pytest.raises(ValueError, match="at least 2"):
        dino_loss(student[:1], teacher[:1], 0.1)


def test_center_softmax_and_update_math() -> None:
    center = DINOCenter(5)
    center.center.copy_(torch.tensor([[0.1, -0.2, 0.3, 0.0, 0.5]]))
    logits = torch.randn(6, 5)
    expected = torch.softmax((logits - center.center) / 0.04, dim=-1)
    assert torch.allclose(center.softmax(logits, 0.04), expected)
    before = center.center.clone()
    center.update(logits, 0.9)
    assert torch.allclose(center.center, 0.9 * before + 0.1 * logits.mean(0, keepdim=True), atol=1e-7)
    assert center.center.shape == (1, 5)


def test_teacher_temperature_sharpens() -> None:
    center = DINOCenter(8)
    logits = torch.randn(4, 8)

    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.clamp_min(1e-30).log()).sum(-1).mean()

    assert entropy(center.softmax(logits, 0.04)) < entropy(center.softmax(logits, 0.5))
    assert torch.isfinite(center.softmax(100 * logits.half(), 0.04)).all()


@pytest.mark.parametrize("loss", ["nt_xent", "dino"])
def test_losses_under_bf16_autocast_equal_float32(loss):
    """Inside autocast a float32 matmul would run in bf16 (SimCLR logits at T = 0.03 on a coarse grid:
    1.7e-3 off on these inputs before the fix). DINO's loss has no matmul; it is checked as a guard."""
    g = torch.Generator().manual_seed(1)
    if loss == "nt_xent":
        a, p = torch.randn(64, 128, generator=g), torch.randn(64, 128, generator=g)

        def fn():
            return nt_xent(a, p, 0.03)
    else:
        student = [torch.randn(16, 256, generator=g) for _ in range(4)]
        teacher_logits = [torch.randn(16, 256, generator=g) for _ in range(2)]

        def fn():
            center = DINOCenter(256)
            center.update(torch.cat(teacher_logits), 0.9)
            probs = [center.softmax(t, 0.04) for t in teacher_logits]
            return dino_loss(student, probs, 0.1) + center.center.sum()

    want = fn()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn()
    assert got.dtype == torch.float32
    assert abs(got.item() - want.item()) < 1e-4
