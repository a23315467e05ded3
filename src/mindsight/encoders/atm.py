"""ATM-S (seed 002): channel-wise transformer + temporal-spatial convolution + MLP projector.

As the authors build it (ncclab-sustech/EEG_Image_decode at 61fc9c3, ``ATMS``), at
63 channels × 250 samples → 1024:

- each channel's whole time series is one token: ``Linear(n_times → d_model)`` (250 → 250),
  plus a fixed sinusoidal position per channel slot (``positions``);
- with subject tokens, the subject's learned token is put *in front* of the channel tokens;
  an unknown subject (index -1, or no index) gets the mean of the known subjects' tokens;
- dropout 0.25, then one post-norm transformer layer: multi-head attention whose heads have
  ``d_model // n_heads`` dimensions (250 → 4 × 62), attention dropout 0.25, a GELU
  feed-forward 250 → 256 → 250, and a final LayerNorm after the layer;
- a ShallowNet temporal-spatial convolution over the (token × feature) map (40 filters) and a
  residual projector (Linear → GELU-Linear-dropout residual → LayerNorm).

That is 3,072,912 parameters with one subject token (the authors' count of used parameters,
3.08 M, includes their 10-row subject table and the loss's logit scale).

One quirk is a named option, ``token_select``: the authors keep the *first* 63 tokens of the
transformer's output (``[:, :63]``), i.e. the subject token and channels 1–62, dropping the
last channel's (O2's) token; ``'first'`` reproduces that, ``'channels'`` (mindsight's default)
keeps the 63 channel tokens. Without subject tokens the two are the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mindsight.encoders.base import ENCODERS, BrainEncoder
from mindsight.encoders.blocks import (
    Dropout,
    ResidualProjector,
    ShallowTSConv,
    flat_size,
    sinusoidal_positions,
)
from mindsight.errors import UnknownNameError

TOKEN_SELECT = ("channels", "first")


class AttentionLayer(nn.Module):
    """One post-norm transformer layer as ATM's (iTransformer's) ``EncoderLayer``.

    Attention heads have ``d_model // n_heads`` dimensions, so ``d_model`` need not be a
    multiple of ``n_heads`` (ATM: 250 with 4 heads of 62); dropout on the attention weights,
    after the attention and inside and after the feed-forward.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        inner = self.n_heads * self.d_head
        self.qkv = nn.Linear(d_model, 3 * inner)
        self.out = nn.Linear(inner, d_model)
        self.attn_dropout = Dropout(dropout)  # on the attention weights
        self.dropout = Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), Dropout(dropout),
                                nn.Linear(d_ff, d_model))
        self.norm2 = nn.LayerNorm(d_model)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q·kᵀ / √d_head) · v, with dropout on the weights while training."""
        if not self.training or self.attn_dropout.p == 0.0:
            return F.scaled_dot_product_attention(q, k, v)  # fused
        weights = torch.softmax(q @ k.transpose(-2, -1) * self.d_head**-0.5, dim=-1)
        return self.attn_dropout(weights) @ v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        a = self.attend(q, k, v)
        x = self.norm1(x + self.dropout(self.out(a.transpose(1, 2).reshape(b, n, -1))))
        return self.norm2(x + self.dropout(self.ff(x)))


@ENCODERS.register("atm", description="ATM-S (seed 002): channel-wise transformer, ShallowNet-style conv")
class ATM(BrainEncoder):
    """ATM-S as the authors build it; see the module doc."""

    closed_form = False
    needs_ch_names = False
    subject_layers = True  # a learned token per training subject, put in front of the channels
    two_heads = False

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 d_model: int = 250, n_heads: int = 4, d_ff: int = 256, n_layers: int = 1,
                 dropout: float = 0.25, n_subjects: int = 0, positions: bool = True,
                 token_select: str = "channels", n_filters: int = 40, proj_blocks: int = 1,
                 proj_dropout: float = 0.5) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs, n_subjects=n_subjects)
        if token_select not in TOKEN_SELECT:
            raise UnknownNameError(
                f"unknown ATM token_select {token_select!r}; available: {', '.join(TOKEN_SELECT)}")
        self.token_select = token_select
        self.token = nn.Linear(n_times, d_model)
        self.register_buffer("positions", sinusoidal_positions(n_chans, d_model) if positions
                             else torch.zeros(n_chans, d_model), persistent=False)
        self.subject_tokens = nn.Embedding(n_subjects, d_model) if n_subjects else None
        self.dropout = Dropout(dropout)
        self.layers = nn.ModuleList(AttentionLayer(d_model, n_heads, d_ff, dropout)
                                    for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.ts_conv = ShallowTSConv(n_chans, d_model, n_filters=n_filters)
        self.projector = ResidualProjector(flat_size(self.ts_conv, n_chans, d_model), n_outputs,
                                           proj_blocks, proj_dropout)

    def subject_token(self, subject: torch.Tensor | None, batch: int) -> torch.Tensor:
        """(batch, 1, d_model) tokens; unknown subjects (-1 or None) get the mean token."""
        table = self.subject_tokens.weight
        mean = table.mean(0)
        if subject is None:
            return mean.expand(batch, 1, -1)
        known = subject >= 0
        tokens = table[subject.clamp(min=0)]
        return torch.where(known[:, None], tokens, mean).unsqueeze(1)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        h = self.token(x) + self.positions
        lead = 0
        if self.subject_tokens is not None:
            h = torch.cat([self.subject_token(subject, x.shape[0]), h], dim=1)
            lead = 1
        h = self.dropout(h)
        for layer in self.layers:
            h = layer(h)
        h = self.norm(h)
        first = 0 if self.token_select == "first" else lead
        return self.projector(self.ts_conv(h[:, first : first + self.n_chans]))

