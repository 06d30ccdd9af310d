"""DINO for speaker verification: a student matches an EMA teacher's sharpened, centred outputs.

The student sees every crop (global and local), the teacher only the global ones; the teacher's
embedder gives the evaluation embeddings. SSPS replaces the teacher outputs (targets) with those of
another utterance: it stores the teacher's bottleneck and recomputes logits with :meth:`DINO.teacher_logits`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ssps.config import DINOConfig
from ssps.errors import SSPSError
from ssps.methods import METHODS, clip_per_parameter, embedding_dim, param_groups
from ssps.methods.ema import ema_update
from ssps.methods.heads import DINOHead
from ssps.methods.losses import DINOCenter, dino_loss
from ssps.methods.simclr import embed_crops


@METHODS.register("dino")
class DINO(nn.Module):
    """Student (embedder + head), a teacher that is its EMA copy, and the teacher centre.

    Args:
        embedder: waveform (B, N) -> embedding (B, D) module (:class:`ssps.embedder.Embedder`).
        cfg: the method's settings (head sizes, temperatures, centre momentum).
    """

    def __init__(self, embedder: nn.Module, cfg: DINOConfig):
        super().__init__()
        if cfg.global_crops < 1 or cfg.global_crops + cfg.local_crops < 2:
            raise SSPSError(
                f"method.dino: need >= 1 global crop and >= 2 crops in all, got "
                f"global_crops={cfg.global_crops}, local_crops={cfg.local_crops}"
            )
        for key in ("student_temperature", "teacher_temperature"):
            if getattr(cfg, key) <= 0:
                raise SSPSError(f"method.dino.{key}: expected a number > 0, got {getattr(cfg, key)}")
        if not 0.0 <= cfg.center_momentum <= 1.0:
            raise SSPSError(
                f"method.dino.center_momentum: expected a number in [0, 1], got {cfg.center_momentum}"
            )
        self.cfg = cfg
        head = DINOHead(embedding_dim(embedder), cfg.head_hidden, cfg.head_bottleneck, cfg.head_out)
        self.student = nn.ModuleDict({"embedder": embedder, "head": head})
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)
        self.center = DINOCenter(cfg.head_out)

    def student_forward(
        self, global_views: list[torch.Tensor], local_views: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Student logits of every crop, globals first.

        Args:
            global_views: G waveform batches (B, N_global).
            local_views: L waveform batches (B, N_local); crops of equal length share one forward.

        Returns:
            G + L tensors (B, K).
        """
        student = self.student
        return embed_crops(
            lambda wav: student["head"](student["embedder"](wav)), [*global_views, *local_views]
        )

    def forward(
        self, global_views: list[torch.Tensor], local_views: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Same as :meth:`student_forward`; call the module itself when it is wrapped in DDP."""
        return self.student_forward(global_views, local_views)

    @torch.no_grad()
    def teacher_forward(
        self, global_views: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Teacher outputs of the global crops.

        Args:
            global_views: G waveform batches (B, N).

        Returns:
            (logits, bottlenecks): G tensors (B, K) and G tensors (B, bottleneck), the normalised
            bottleneck that :meth:`teacher_logits` maps back to the logits.
        """
        teacher = self.teacher
        z = embed_crops(lambda wav: teacher["head"].bottleneck(teacher["embedder"](wav)), global_views)
        return [teacher["head"].last_layer(b) for b in z], z

    @torch.no_grad()
    def teacher_logits(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """(B, bottleneck) stored teacher bottleneck (e.g. float16) -> (B, K) teacher logits."""
        return self.teacher["head"].last_layer(bottleneck)

    def loss(
        self,
        student_logits: list[torch.Tensor],
        teacher_logits: list[torch.Tensor],
        teacher_temperature: float,
        update_center: bool = True,
    ) -> torch.Tensor:
        """Centre and sharpen the teacher logits, take the DINO loss, then update the centre.

        Args:
            student_logits: G + L tensors (B, K) from :meth:`student_forward`.
            teacher_logits: G tensors (B, K) from :meth:`teacher_forward`, or SSPS's replacements; the
                centre update sees exactly these.
            teacher_temperature: this step's teacher temperature (a schedule value).
            update_center: false for a second loss in the same step (e.g. the same-utterance term when
                SSPS is on), so the centre moves once per step, with the targets SSPS hands in.

        Returns:
            () loss.
        """
        probs = [self.center.softmax(t.detach(), teacher_temperature) for t in teacher_logits]
        loss = dino_loss(student_logits, probs, self.cfg.student_temperature)
        if update_center:
            self.center.update(torch.cat(teacher_logits).detach(), self.cfg.center_momentum)
        return loss

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student; buffers copied from the student."""
        ema_update(self.teacher, self.student, momentum)

    def reference_encoder(self) -> nn.Module:
        """The teacher embedder, which SSPS uses (under no_grad) for the reference frames."""
        return self.teacher["embedder"]

    def eval_embedder(self) -> nn.Module:
        """The teacher embedder: it gives the evaluation embeddings (and goes into checkpoints)."""
        return self.teacher["embedder"]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Groups "decay", "no_decay" (1-D parameters) and "last_layer" (the head's prototypes)."""
        return param_groups(
            self.student.named_parameters(), weight_decay, last_layer_prefix="head.prototypes."
        )

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The head's trainable last layer; the trainer drops its gradients during the first epoch."""
        return [p for p in self.student["head"].prototypes.parameters() if p.requires_grad]

    def clip_gradients(self, max_norm: float) -> torch.Tensor:
        """Per-parameter gradient-norm clip as in facebookresearch/dino; returns the (P,) norms before it."""
        return clip_per_parameter(self.student.parameters(), max_norm)

    def on_step(self, step: int, total_steps: int) -> None:
        """Nothing: the teacher EMA and the centre change in :meth:`update_teacher` and :meth:`loss`."""
