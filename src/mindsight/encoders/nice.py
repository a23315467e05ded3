"""NICE (Song et al., ICLR'24): ShallowNet-style temporal-spatial conv + residual projector.

``init="normal-0.02"`` re-draws the weights as NICE's training script does before training
(``weights_init_normal`` on its conv block and projector); the default keeps PyTorch's.
"""

from __future__ import annotations

import torch

from mindsight.encoders.base import ENCODERS, BrainEncoder
from mindsight.encoders.blocks import ResidualProjector, ShallowTSConv, flat_size
from mindsight.encoders.init import check_init, initialize


@ENCODERS.register("nice", description="NICE: temporal-spatial convolution + residual projector")
class NICE(BrainEncoder):
    """NICE's EEG encoder (its patch embedding and projector); see the module doc."""

    closed_form = False
    needs_ch_names = False
    subject_layers = False
    two_heads = False

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 n_filters: int = 40, dropout: float = 0.5, proj_blocks: int = 1,
                 init: str = "default") -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs)
        check_init(init)
        self.ts_conv = ShallowTSConv(n_chans, n_times, n_filters=n_filters, dropout=dropout)
        self.projector = ResidualProjector(flat_size(self.ts_conv, n_chans, n_times), n_outputs,
                                           proj_blocks, dropout)
        initialize(self, init)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.projector(self.ts_conv(x))

