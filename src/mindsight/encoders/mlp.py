"""A plain MLP over the flattened (channels × time) epoch: the simplest nonlinear baseline."""

from __future__ import annotations

import torch
from torch import nn

from mindsight.encoders.base import ENCODERS, BrainEncoder


@ENCODERS.register("mlp", description="MLP over flattened channels × time")
class MLP(BrainEncoder):
    """Flatten, ``n_hidden`` Linear-GELU-dropout layers of ``hidden`` units, a linear read-out."""

    closed_form = False
    needs_ch_names = False
    subject_layers = False
    two_heads = False

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 hidden: int = 1024, n_hidden: int = 1, dropout: float = 0.5) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs)
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_chans * n_times
        for _ in range(n_hidden):
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)

