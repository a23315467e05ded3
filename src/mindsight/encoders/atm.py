"""ATM (seed 002): channel-wise transformer + temporal-spatial convolution + MLP projector.

Each channel's whole time series is one token (no patching). Tokens get a sinusoidal position
embedding and attend to each other (attention across channels); a temporal-spatial convolution
then summarises the (channel × feature) map and a residual MLP projector with LayerNorm maps it
to the embedding. With ``n_subjects > 0`` a learned subject token joins the channel tokens; an
unknown subject (index -1, or no index) gets the mean of the known subjects' tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from mindsight.encoders.base import ENCODERS
from mindsight.encoders.blocks import (
    ResidualProjector,
    ShallowTSConv,
    flat_size,
    sinusoidal_positions,
)
from mindsight.errors import UnknownNameError

TS_CONVS = {
    "shallow": lambda n_chans, n_times, sfreq: ShallowTSConv(n_chans, n_times),
}


class ATM(nn.Module):
    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 d_model: int = 256, n_heads: int = 4, d_ff: int = 256, n_layers: int = 1,
                 dropout: float = 0.25, conv: str = "shallow", n_subjects: int = 0,
                 proj_blocks: int = 1, proj_dropout: float = 0.5) -> None:
        super().__init__()
        if conv not in TS_CONVS:
            raise UnknownNameError(
                f"unknown ATM temporal-spatial convolution {conv!r}; available: {', '.join(TS_CONVS)}"
            )
        self.n_chans, self.n_subjects = n_chans, n_subjects
        self.token = nn.Linear(n_times, d_model)
        n_tokens = n_chans + (1 if n_subjects else 0)
        self.register_buffer("positions", sinusoidal_positions(n_tokens, d_model), persistent=False)
        self.subject_tokens = nn.Embedding(n_subjects, d_model) if n_subjects else None
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, activation="gelu",
                                           batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.ts_conv = TS_CONVS[conv](n_chans, d_model, sfreq)
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
        tokens = self.token(x)
        if self.subject_tokens is not None:
            tokens = torch.cat([tokens, self.subject_token(subject, x.shape[0])], dim=1)
        h = self.transformer(self.dropout(tokens + self.positions))
        return self.projector(self.ts_conv(h[:, : self.n_chans]))


@ENCODERS.register("atm", subjects=True,
                   description="ATM-S (seed 002): channel-wise transformer, ShallowNet-style conv")
def atm(n_chans: int, n_times: int, sfreq: float, n_outputs: int, **params) -> ATM:
    return ATM(n_chans, n_times, sfreq, n_outputs, **params)

