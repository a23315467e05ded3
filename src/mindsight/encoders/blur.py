"""The EEG encoders of two blur-prior papers: UBP's projection layer and MultiBlur's encoder.

- ``ubp``: Wu et al., CVPR 2025, "Bridging the Vision-Brain Gap with an Uncertainty-Aware Blur
  Prior" (HaitaoWuTJU/Uncertainty-aware-Blur-Prior). Its EEG encoder is a residual projector
  over the flattened epoch (17 posterior channels × 250 samples at 250 Hz → the CLIP size).
- ``multiblur``: Liu et al., AAAI 2026, "Leveraging visual blur perception characteristics for
  EEG decoding" (makeitperfect/VisualEEGDecoding): a spatial filter bank with non-negative
  weights, a temporal MLP shared by the virtual channels, and a linear map to the embedding.

The blur priors themselves (blurred image targets) live on the image side, not here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mindsight.encoders.base import ENCODERS, BrainEncoder
from mindsight.encoders.blocks import Dropout, ResidualProjector


@ENCODERS.register("ubp", description="UBP: residual projector over the flattened epoch")
class UBP(BrainEncoder):
    """UBP's EEG projection layer, as ``EEGProjectLayer`` in ``base/eeg_backbone.py`` of
    HaitaoWuTJU/Uncertainty-aware-Blur-Prior (the ``brain_backbone`` of ``scripts/exp.sh``).

    The epoch is flattened (channels × times; 17 × 250 = 4,250) and mapped by
    ``Linear(4250 → n_outputs)``, then ``proj_blocks`` residual blocks
    ``x + Dropout(Linear(GELU(x)))`` (dropout 0.3), then a LayerNorm. No convolution, no
    normalisation of the input. At 17 × 250 → 1024 (CLIP RN50) that is 5,404,672 parameters
    (the authors' module also holds the loss's logit scale, one more).
    """

    closed_form = False
    needs_ch_names = False
    subject_layers = False
    two_heads = False

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 dropout: float = 0.3, proj_blocks: int = 1) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs)
        self.projector = ResidualProjector(n_chans * n_times, n_outputs, proj_blocks, dropout)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.projector(x.flatten(1))


class NonNegativeSpatialFilter(nn.Module):
    """``n_filters`` spatial filters over ``n_chans`` channels, weights kept non-negative.

    As the authors' ``Conv2dWithAbs`` (``models/Encoder.py``): the constraint is a projection,
    not a reparametrisation. Before every forward (training or not) the stored weights are
    replaced by their absolute values, and the filter then uses them as they are; gradients
    are those of a plain linear map at the projected weights, and an optimiser step may leave
    negative values, which the next forward folds back. No bias. Initialised as PyTorch's
    convolution (uniform in ±1/√n_chans), already folded to [0, 1/√n_chans).
    """

    def __init__(self, n_chans: int, n_filters: int, nonnegative: bool = True) -> None:
        super().__init__()
        self.nonnegative = nonnegative
        self.weight = nn.Parameter(torch.empty(n_filters, n_chans))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # Conv2d's default init
        self.project()

    def extra_repr(self) -> str:
        n_filters, n_chans = self.weight.shape
        return f"{n_chans} → {n_filters}, nonnegative={self.nonnegative}"

    def project(self) -> None:
        """Fold the stored weights to their absolute values (in place; a no-op when off)."""
        if self.nonnegative:
            # through .data: the parameter's version counter is left alone, so a graph built
            # by an earlier forward stays valid (the fold is idempotent between optimiser steps)
            self.weight.data.abs_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, chans, times) → (batch, filters, times)."""
        self.project()
        return torch.einsum("fc,bct->bft", self.weight, x)


@ENCODERS.register("multiblur",
                   description="MultiBlur: non-negative spatial filters + shared temporal MLP")
class MultiBlur(BrainEncoder):
    """MultiBlur's EEG encoder, as ``Brain_Visual_Encoder_EEG`` (its ``__init__`` and
    ``forward``) in ``models/Encoder.py`` of makeitperfect/VisualEEGDecoding.

    In order:

    - spatial filtering to ``n_filters`` virtual channels (63 → 25), no bias, weights folded to
      their absolute values before each forward (:class:`NonNegativeSpatialFilter`);
    - BatchNorm over the virtual channels;
    - a temporal MLP applied to each virtual channel's series with shared weights:
      ``Linear(n_times → hidden)``, ELU, dropout 0.25, ``Linear(hidden → hidden)``, ELU,
      dropout 0.65 (250 → 200 → 200);
    - flattened (25 × 200 = 5,000) and one ``Linear(→ n_outputs)``: no activation, no norm.

    At 63 × 250 → 1024 (CLIP RN50) that is 5,213,049 parameters. The authors' module also
    holds the image-side adapter (a learned softmax mix of 12 blur levels and an MLP); that is
    not part of the brain encoder. ``nonnegative=False`` drops the constraint (their MEG
    encoder's plain spatial convolution).
    """

    closed_form = False
    needs_ch_names = False
    subject_layers = False
    two_heads = False

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 n_filters: int = 25, hidden: int = 200, dropout: float = 0.25,
                 dropout_out: float = 0.65, nonnegative: bool = True) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs)
        self.spatial = NonNegativeSpatialFilter(n_chans, n_filters, nonnegative)
        self.norm = nn.BatchNorm1d(n_filters)
        self.temporal = nn.Sequential(
            nn.Linear(n_times, hidden), nn.ELU(), Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ELU(), Dropout(dropout_out),
        )
        self.head = nn.Linear(n_filters * hidden, n_outputs)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        h = self.temporal(self.norm(self.spatial(x)))  # (batch, filters, hidden)
        return self.head(h.flatten(1))

