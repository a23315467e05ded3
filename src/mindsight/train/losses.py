"""The training objective: λ·CLIP + (1 − λ)·MSE (+ an optional concept-name text term).

The CLIP term is the symmetric InfoNCE loss between brain and image embeddings with a learnable
temperature. Trials of the same image in one batch (single-trial training) have identical target
columns; the symmetric loss then gives each of them the same share, so no special handling is
needed (a soft multi-positive target gives exactly the same value).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: temperature never below 0.01


def clip_loss(brain: torch.Tensor, image: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised ``brain`` and ``image`` rows (row i pairs i)."""
    logits = logit_scale.exp() * F.normalize(brain, dim=1) @ F.normalize(image, dim=1).T
    labels = torch.arange(len(brain), device=brain.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class ContrastiveLoss(nn.Module):
    """λ·CLIP + (1 − λ)·MSE + text_weight·CE(brain → concept-name embeddings).

    The MSE term reads ``mse_pred`` when given: the MSE head of a two-head encoder.

    The temperature is a parameter of the loss (initialised to ``temperature``), trained with
    the encoder when ``learn_temperature``; it is saved in checkpoints with the model.
    """

    def __init__(self, clip_weight: float = 0.9, text_weight: float = 0.0,
                 temperature: float = 0.07, learn_temperature: bool = True) -> None:
        super().__init__()
        self.clip_weight = float(clip_weight)
        self.text_weight = float(text_weight)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)),
                                        requires_grad=learn_temperature)

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.detach().exp())

    def forward(self, brain: torch.Tensor, image: torch.Tensor,
                text_pred: torch.Tensor | None = None,
                text_table: torch.Tensor | None = None,
                concept_ids: torch.Tensor | None = None,
                mse_pred: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """``brain`` enters the CLIP (and text) term, ``mse_pred`` the MSE term; without
        ``mse_pred`` (single-head encoders) ``brain`` enters both."""
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE)
        parts: dict[str, torch.Tensor] = {}
        total = brain.new_zeros(())
        if self.clip_weight > 0:
            parts["clip"] = clip_loss(brain, image, scale)
            total = total + self.clip_weight * parts["clip"]
        if self.clip_weight < 1:
            parts["mse"] = F.mse_loss(brain if mse_pred is None else mse_pred, image)
            total = total + (1 - self.clip_weight) * parts["mse"]
        if self.text_weight > 0 and text_pred is not None:
            logits = scale.exp() * F.normalize(text_pred, dim=1) @ F.normalize(text_table, dim=1).T
            parts["text"] = F.cross_entropy(logits, concept_ids)
            total = total + self.text_weight * parts["text"]
        return total, {k: float(v.detach()) for k, v in parts.items()}
