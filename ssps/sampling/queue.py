"""SSPS memory queues, held in module buffers and identical on every rank.

Both queues gather the step's entries from every rank (``ssps.dist.gather``) before writing, so each
rank holds the same copy, as in MoCo's ``_dequeue_and_enqueue``.

Memory at VoxCeleb2 scale (N = 1,092,009 utterances, D = 512): the reference queue takes N * D * 2 bytes
= 1.04 GiB in float16 (2.08 GiB in float32) plus N bytes of ``filled`` flags; a SimCLR positive queue of
Q' = 25,000 x 512 takes about 25 MiB in float16. ``benchmarks/bench_sampler.py`` prints the measured figures.

>>> q = PositiveQueue(size=3, shape=(2,), dtype=torch.float32)
>>> q.write(torch.tensor([7, 8]), torch.ones(2, 2))
>>> q.write(torch.tensor([9, 10]), torch.zeros(2, 2))
>>> q.indices.tolist(), int(q.ptr)
([10, 8, 9], 1)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssps import dist

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def queue_dtype(name: str) -> torch.dtype:
    """Map a config name (``float16`` | ``bfloat16`` | ``float32``) to a torch dtype."""
    from ssps.errors import SSPSError

    if name not in DTYPES:
        raise SSPSError(f"ssps.queue_dtype: expected one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def _last_occurrence(indices: torch.Tensor) -> torch.Tensor:
    """Positions of the last occurrence of each distinct value in ``indices`` (B,) -> (U,).

    Writing duplicate indices with one ``index_put_`` leaves an unspecified winner (and a different one on
    each GPU); keeping only the last occurrence makes every rank store the same row.
    """
    sorted_idx, perm = torch.sort(indices, stable=True)
    last = torch.ones_like(sorted_idx, dtype=torch.bool)
    last[:-1] = sorted_idx[1:] != sorted_idx[:-1]
    return perm[last]


class ReferenceQueue(nn.Module):
    """One slot per training utterance: the L2-normalised reference embedding last written for it.

    Args:
        num_items: N, the number of training utterances (dataset indices 0..N-1).
        dim: D, the embedding size.
        dtype: storage dtype; float16 halves the memory (the k-means runs in float32 regardless).
        persistent: whether the buffers appear in ``state_dict``.
        normalise: store rows L2-normalised (embeddings); false keeps them as given (channel statistics).
    """

    def __init__(
        self,
        num_items: int,
        dim: int,
        dtype: torch.dtype = torch.float16,
        persistent: bool = True,
        normalise: bool = True,
    ):
        super().__init__()
        self.normalise = normalise
        self.register_buffer("embeddings", torch.zeros(num_items, dim, dtype=dtype), persistent=persistent)
        self.register_buffer("filled", torch.zeros(num_items, dtype=torch.bool), persistent=persistent)

    @torch.no_grad()
    def write(self, indices: torch.Tensor, emb: torch.Tensor) -> None:
        """Gather (B,) dataset indices and (B, D) embeddings from every rank; store them normalised."""
        indices = dist.gather(indices.to(self.filled.device, torch.long))
        emb = dist.gather(emb.detach().to(self.embeddings.device, torch.float32))
        keep = _last_occurrence(indices)
        indices, emb = indices[keep], emb[keep]
        emb = F.normalize(emb, dim=-1) if self.normalise else emb
        self.embeddings[indices] = emb.to(self.embeddings.dtype)
        self.filled[indices] = True

    @property
    def nbytes(self) -> int:
        return self.embeddings.nbytes + self.filled.nbytes


class PositiveQueue(nn.Module):
    """A ring buffer of the last Q positive-branch embeddings and the dataset index of each.

    Args:
        size: Q, the number of entries kept.
        shape: the shape of one entry, e.g. ``(512,)`` (SimCLR) or ``(2, 256)`` (DINO's two teacher crops).
        dtype: storage dtype (entries are stored as given, not normalised).
        persistent: whether the buffers appear in ``state_dict``.
    """

    def __init__(
        self, size: int, shape: tuple[int, ...], dtype: torch.dtype = torch.float16, persistent: bool = True
    ):
        super().__init__()
        self.size = size
        self.register_buffer("embeddings", torch.zeros(size, *shape, dtype=dtype), persistent=persistent)
        self.register_buffer("indices", torch.full((size,), -1, dtype=torch.long), persistent=persistent)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long), persistent=persistent)

    @torch.no_grad()
    def write(self, indices: torch.Tensor, emb: torch.Tensor) -> None:
        """Gather (B,) dataset indices and (B, *shape) entries from every rank; overwrite the oldest slots.

        A gathered batch larger than Q keeps its newest (last) Q entries.
        """
        indices = dist.gather(indices.to(self.indices.device, torch.long))
        emb = dist.gather(emb.detach().to(self.embeddings.device, self.embeddings.dtype))
        if indices.shape[0] > self.size:
            indices, emb = indices[-self.size :], emb[-self.size :]
        b = indices.shape[0]
        slots = (self.ptr + torch.arange(b, device=self.ptr.device)) % self.size
        self.embeddings[slots] = emb
        self.indices[slots] = indices
        self.ptr.copy_((self.ptr + b) % self.size)

    def valid_mask(self) -> torch.Tensor:
        """(Q,) bool: slots that hold an entry."""
        return self.indices >= 0

    @property
    def nbytes(self) -> int:
        return self.embeddings.nbytes + self.indices.nbytes + self.ptr.nbytes
