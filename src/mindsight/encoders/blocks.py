"""Building blocks shared by the encoders: temporal-spatial convolution and the projector."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Dropout):
    """``nn.Dropout`` with masks drawn four times cheaper on the CPU, same distribution.

    PyTorch's CPU dropout draws one Bernoulli number per element from the generator; here each
    64-bit draw of the same generator (so ``torch.manual_seed`` and the saved RNG state govern
    it) gives four 16-bit uniform numbers, kept when at least ``p`` × 65,536 (``p`` exact to
    1/65,536: 0.25 and 0.5 exactly, 0.1 as 0.100006). Kept values are scaled by 1 / (1 − p).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return x * 0.0
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, (-(-n // 4),), device=x.device)
        keep = words.view(torch.int16)[:n].view(x.shape) >= round(self.p * 65536) - 32768
        return x * (keep.to(x.dtype) * (1.0 / (1.0 - self.p)))


class ShallowTSConv(nn.Module):
    """ShallowNet-style temporal-spatial convolution (NICE's patch embedding, ATM-S).

    A temporal convolution (``n_filters`` kernels of ``kernel`` samples), average pooling over
    time (``pool`` samples, stride ``stride``), BatchNorm, ELU, one spatial convolution across
    all channels, BatchNorm, ELU, dropout and a 1×1 convolution; flattened to one feature vector
    per trial. Parameters and outputs are those of that layer stack (``temporal`` is the
    ``Conv2d(1, F, (1, kernel))``, ``spatial`` the rest), but the two linear steps run in a
    cheaper order with the same result up to float rounding:

    - convolution and average pooling are both linear and shift-invariant, so they commute: the
      box average of ``pool`` samples is taken first (one cumulative sum), then the kernel is
      applied at stride ``stride`` as one matrix product over (kernel × filters), about a third
      of the multiply-adds of convolving first and far faster than a strided 1-channel conv;
    - the spatial convolution over all channels is one batched matrix product.
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
            Dropout(dropout),
            nn.Conv2d(n_filters, n_filters, 1),
            nn.Flatten(),
        )

    def pooled_kernel(self) -> torch.Tensor:
        """The temporal kernel convolved with the pooling box: (filters, 1, 1, kernel + pool − 1),
        i.e. convolution then pooling as one strided convolution (for reference and tests)."""
        w = self.temporal.weight  # (filters, 1, 1, kernel)
        box = w.new_full((1, 1, self.pool), 1.0 / self.pool)
        full = F.conv1d(F.pad(w.flatten(0, 2)[:, None], (self.pool - 1, self.pool - 1)), box)
        return full.view(w.shape[0], 1, 1, -1)

    def temporal_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, chans, times) → (batch, filters, chans, steps): the temporal convolution
        followed by the average pooling, computed as box average then strided kernel."""
        b, c, _ = x.shape
        w = self.temporal.weight.flatten(1)  # (filters, kernel)
        mean = x.mean(-1, keepdim=True)  # prefix sums of centred rows keep float32 precision
        csum = F.pad(x - mean, (1, 0)).cumsum(-1)
        box = (csum[..., self.pool:] - csum[..., : -self.pool]) / self.pool + mean  # (b, c, t − pool + 1)
        patches = box.unfold(-1, w.shape[1], self.stride)  # (b, c, steps, kernel)
        steps = patches.shape[2]
        h = torch.baddbmm(self.temporal.bias[None, :, None], w.expand(b, -1, -1),
                          patches.reshape(b, c * steps, -1).transpose(1, 2))  # (b, filters, c·steps)
        return h.view(b, -1, c, steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.spatial[1](self.spatial[0](self.temporal_pooled(x)))
        conv = self.spatial[2]  # the spatial convolution as one (filters × filters·chans) product
        b, f, c, t = h.shape
        h = torch.baddbmm(conv.bias[None, :, None], conv.weight.view(1, f, f * c).expand(b, -1, -1),
                          h.reshape(b, f * c, t))
        return self.spatial[3:](h.unsqueeze(2))


class ResidualProjector(nn.Module):
    """Linear map to the embedding size, ``n_blocks`` residual GELU-Linear blocks, LayerNorm."""

    def __init__(self, n_inputs: int, n_outputs: int, n_blocks: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        self.proj = nn.Linear(n_inputs, n_outputs)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Linear(n_outputs, n_outputs), Dropout(dropout))
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
