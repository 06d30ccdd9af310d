"""SSL methods: each is built from an embedder it is given, a head and a loss (composition, no base class).

Every method registers itself in ``METHODS`` and shares the calls the trainer makes: ``forward`` (the
training forward, so DistributedDataParallel sees it), ``loss``, ``trainable_parameters``,
``param_groups``, ``last_layer_parameters``, ``clip_gradients``, ``reference_encoder``, ``eval_embedder``
and ``on_step``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from ssps.config import Config
from ssps.errors import SSPSError
from ssps.registry import Registry

METHODS = Registry("method")


def method_uses_labels(name: str) -> bool:
    """Whether method ``name`` trains on the speaker column (``supervised``); SSL methods never do."""
    try:
        return bool(getattr(METHODS.get(name), "uses_labels", False))
    except KeyError as e:
        raise SSPSError(f"method.name: {e.args[0]}") from None


def build_method(cfg: Config, num_classes: int | None = None) -> nn.Module:
    """Make the method ``cfg.method.name`` around a fresh ``Embedder(cfg)``, with ``cfg.method.<name>``.

    ``num_classes``: the number of speakers, for the methods that use labels (given by the trainer from
    the data layer's speaker table); ignored by the label-free ones.
    """
    from ssps.embedder import Embedder  # late: the embedder pulls in the front end and every encoder

    try:
        factory = METHODS.get(cfg.method.name)
    except KeyError as e:
        raise SSPSError(f"method.name: {e.args[0]}") from None
    settings = getattr(cfg.method, cfg.method.name)
    if method_uses_labels(cfg.method.name):
        if num_classes is None:
            raise SSPSError(f"method.name={cfg.method.name} needs the number of speakers of the manifest")
        return factory(Embedder(cfg), settings, num_classes)
    return factory(Embedder(cfg), settings)


def param_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float, last_layer_prefix: str = ""
) -> list[dict]:
    """Optimizer groups: weight decay on matrices, none on 1-D tensors (biases, norms).

    Parameters whose name starts with ``last_layer_prefix`` (when given) form a third group named
    "last_layer" (with weight decay), so the trainer can freeze them. Frozen parameters are left out.
    Each group has a "name" key: "decay", "no_decay" or "last_layer".
    """
    groups: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "last_layer": []}
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        if last_layer_prefix and name.startswith(last_layer_prefix):
            groups["last_layer"].append(p)
        elif p.ndim <= 1:
            groups["no_decay"].append(p)
        else:
            groups["decay"].append(p)
    wd = {"decay": weight_decay, "no_decay": 0.0, "last_layer": weight_decay}
    return [{"name": k, "params": v, "weight_decay": wd[k]} for k, v in groups.items() if v]


@torch.no_grad()
def clip_per_parameter(parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale each gradient whose own L2 norm exceeds ``max_norm`` down to it (facebookresearch/dino).

    Returns:
        (P,) gradient norms before clipping, one per parameter with a gradient (computed on device,
        without a host sync).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack([g.detach().norm(2).float() for g in grads])
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g, s in zip(grads, scale, strict=True):
        g.mul_(s.to(g.dtype))
    return norms


@torch.no_grad()
def embedding_dim(embedder: nn.Module) -> int:
    """Size D of the embedder's output, from the encoder's ``embed_dim`` or else one probe forward."""
    dim = getattr(getattr(embedder, "encoder", None), "embed_dim", None)
    if isinstance(dim, int):
        return dim
    was_training = embedder.training
    embedder.eval()  # eval: the probe must not move BatchNorm statistics
    device = next(iter(embedder.parameters())).device
    rate = getattr(getattr(embedder, "features", None), "sample_rate", 16000)
    dim = embedder(torch.zeros(1, rate, device=device)).shape[-1]
    embedder.train(was_training)
    return int(dim)


# Importing the modules registers their methods.
from ssps.methods import dino, simclr, supervised  # noqa: E402, F401
