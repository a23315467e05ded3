"""Building blocks shared by the encoders: temporal-spatial convolution and the projector."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ShallowTSConv(nn.Module):
    """ShallowNet-style temporal-spatial convolution (NICE's patch embedding, ATM-S).

    A temporal convolution, average pooling over time, then one spatial convolution across all
    channels; the output is flattened to one feature vector per trial. The temporal convolution
    and the pooling are both linear and shift-invariant, so they run as one strided convolution
    with the combined kernel: the same function and gradients, about twice as fast.
    """

    def __init__(self, n_chans: int, n_times: int, n_filters: int = 40, kernel: int = 25,
                 pool: int = 51, stride: int = 5, dropout: float = 0.5) -> None:
        super().__init__()
        kernel = min(kernel, n_times)
        self.pool = max(1, min(pool, n_times - kernel + 1))
        self.stride = stride
        self.temporal = nn.Conv2d(1, n_filters, (1, kernel))
        self.spatial = nn.Sequential(
            nn.BatchNorm2d(n_filters),
            nn.ELU(),
            nn.Conv2d(n_filters, n_filters, (n_chans, 1)),
            nn.BatchNorm2d(n_filters),
            nn.ELU(),
            nn.Dropout(dropout),
            nn.Conv2d(n_filters, n_filters, 1),
            nn.Flatten(),
        )

    def pooled_kernel(self) -> torch.Tensor:
        """The temporal kernel convolved with the pooling box: (filters, 1, 1, kernel + pool − 1)."""
        w = self.temporal.weight  # (filters, 1, 1, kernel)
        box = w.new_full((1, 1, self.pool), 1.0 / self.pool)
        full = F.conv1d(F.pad(w.flatten(0, 2)[:, None], (self.pool - 1, self.pool - 1)), box)
        return full.view(w.shape[0], 1, 1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x.unsqueeze(1), self.pooled_kernel(), self.temporal.bias, stride=(1, self.stride))
        return self.spatial(h)


class ResidualProjector(nn.Module):
    """Linear map to the embedding size, ``n_blocks`` residual GELU-Linear blocks, LayerNorm."""

    def __init__(self, n_inputs: int, n_outputs: int, n_blocks: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        self.proj = nn.Linear(n_inputs, n_outputs)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Linear(n_outputs, n_outputs), nn.Dropout(dropout))
            for _ in range(n_blocks)
        )
        self.norm = nn.LayerNorm(n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        for block in self.blocks:
            x = x + block(x)
        return self.norm(x)


def sinusoidal_positions(n_positions: int, dim: int) -> torch.Tensor:
    """The transformer's fixed sin/cos position table, shape (n_positions, dim)."""
    pos = torch.arange(n_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


def flat_size(module: nn.Module, *shape: int) -> int:
    """Length of ``module``'s flattened output for one input of ``shape`` (a dry run)."""
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(1, *shape))
    module.train(was_training)
    return int(out.reshape(1, -1).shape[1])
