"""The training objective: w_clip·CLIP + w_mse·MSE + w_text·text.

mindsight's default is λ·CLIP + (1 − λ)·MSE + 0.1·text: the symmetric InfoNCE loss between the
L2-normalised brain and image embeddings with a learnable temperature (logits = exp(s)·cosine,
CLIP's parametrisation), a mean-squared error on the unnormalised embeddings, and a concept-name
term that classifies each trial among the training concept names. The published recipes differ
in named options (see ``configs/atm.yaml``, ``configs/nice.yaml``):

- ``logit_scale='raw'`` (ATM): logits = s·⟨brain, unit image⟩ with the parameter s used as it is
  (initially log(1/0.07) ≈ 2.66), not exponentiated; ``'softplus'`` (UBP): softplus(s) instead;
  ``'unit'`` (multi-level blur): no scale at all, logits = ⟨brain, unit image⟩;
- ``normalize_brain=False`` (ATM): the brain embedding enters the logits unnormalised;
- ``text_loss='clip'`` (ATM): the text term is InfoNCE between each trial's brain embedding and
  the text embedding of its concept, within the batch, instead of a classification;
- ``mse_weight``: the MSE weight when it is not 1 − λ (ATM: 0, with λ = 0.99, text 0.01).

Trials of the same image in one batch (single-trial training) have identical target columns;
the symmetric loss then gives each of them the same share, so no special handling is needed (a
soft multi-positive target gives exactly the same value).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: temperature never below 0.01


def clip_loss(brain: torch.Tensor, image: torch.Tensor, logit_scale: torch.Tensor, *,
              normalize_brain: bool = True, exp: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE between ``brain`` and L2-normalised ``image`` rows (row i pairs i).

    With ``exp`` the logits are ``exp(logit_scale)·⟨b, i⟩`` (CLIP), else ``logit_scale·⟨b, i⟩``
    (ATM); ``b`` is L2-normalised when ``normalize_brain``.
    """
    b = F.normalize(brain, dim=1) if normalize_brain else brain
    logits = (logit_scale.exp() if exp else logit_scale) * b @ F.normalize(image, dim=1).T
    labels = torch.arange(len(brain), device=brain.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class ContrastiveLoss(nn.Module):
    """``clip_weight``·CLIP + ``mse_weight``·MSE + ``text_weight``·text (see the module doc).

    ``mse_weight=None`` means 1 − ``clip_weight`` (the λ convention). The MSE term reads
    ``mse_pred`` when given: the MSE head of a two-head encoder.

    The logit scale is a parameter of the loss (initialised from ``temperature``: log(1/T)),
    trained with the encoder when ``learn_temperature``; it is saved in checkpoints with the
    model. ``forward`` returns the total and its parts as detached tensors (no host sync).
    """

    def __init__(self, clip_weight: float = 0.9, text_weight: float = 0.0,
                 temperature: float = 0.07, learn_temperature: bool = True, *,
                 mse_weight: float | None = None, logit_scale: str = "exp",
                 normalize_brain: bool = True, text_loss: str = "concepts") -> None:
        super().__init__()
        self.clip_weight = float(clip_weight)
        self.mse_weight = 1.0 - self.clip_weight if mse_weight is None else float(mse_weight)
        self.text_weight = float(text_weight)
        self.exp = logit_scale == "exp"
        self.kind = logit_scale
        self.normalize_brain = bool(normalize_brain)
        self.text_loss = text_loss
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)),
                                        requires_grad=learn_temperature)

    def scale(self) -> torch.Tensor:
        """The factor the logits are multiplied by: exp(s) clamped at 100, s itself,
        softplus(s), or 1."""
        if self.kind == "exp":
            return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        if self.kind == "softplus":
            return F.softplus(self.logit_scale)
        if self.kind == "unit":
            return self.logit_scale.new_ones(())
        return self.logit_scale

    def pair_logits(self, brain: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The diagonal of the CLIP term's logits: each brain embedding against its own target."""
        b = F.normalize(brain, dim=1) if self.normalize_brain else brain
        return self.scale() * (b * F.normalize(image, dim=1)).sum(1)

    @property
    def temperature(self) -> float:
        return float(1.0 / self.scale().detach())

    def forward(self, brain: torch.Tensor, image: torch.Tensor,
                text_pred: torch.Tensor | None = None,
                text_table: torch.Tensor | None = None,
                concept_ids: torch.Tensor | None = None,
                mse_pred: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``brain`` enters the CLIP (and text) term, ``mse_pred`` the MSE term; without
        ``mse_pred`` (single-head encoders) ``brain`` enters both."""
        scale = self.scale()
        parts: dict[str, torch.Tensor] = {}
        total = brain.new_zeros(())
        if self.clip_weight > 0:
            parts["clip"] = clip_loss(brain, image, scale, normalize_brain=self.normalize_brain,
                                      exp=False)
            total = total + self.clip_weight * parts["clip"]
        if self.mse_weight > 0:
            parts["mse"] = F.mse_loss(brain if mse_pred is None else mse_pred, image)
            total = total + self.mse_weight * parts["mse"]
        if self.text_weight > 0 and text_pred is not None:
            if self.text_loss == "clip":
                parts["text"] = clip_loss(text_pred, text_table[concept_ids], scale,
                                          normalize_brain=self.normalize_brain, exp=False)
            else:
                pred = F.normalize(text_pred, dim=1) if self.normalize_brain else text_pred
                logits = scale * pred @ F.normalize(text_table, dim=1).T
                parts["text"] = F.cross_entropy(logits, concept_ids)
            total = total + self.text_weight * parts["text"]
        return total, {k: v.detach() for k, v in parts.items()}
