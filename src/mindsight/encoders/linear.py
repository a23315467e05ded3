"""Ridge regression from the flattened epoch to the embedding (Benchetrit et al.'s linear decoder).

Fitted in closed form, not by gradient descent: one eigendecomposition of the (features ×
features) or (trials × trials) Gram matrix, whichever is smaller, gives the solution for every
regularisation strength at once; the strength is chosen on the validation split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from mindsight.encoders.base import ENCODERS, BrainEncoder

DEFAULT_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)


@ENCODERS.register("ridge",
                   description="ridge regression on the flattened epoch, closed form (Benchetrit et al.)")
class Ridge(BrainEncoder):
    """z-scored flattened epoch → linear map → embedding. ``alphas`` are relative to the mean
    eigenvalue of the Gram matrix, so the grid does not depend on the data's scale."""

    closed_form = True
    selects = "alpha"  # the buffer fit sets to the chosen strength (relative to the mean eigenvalue)
    needs_ch_names = False
    subject_layers = False
    two_heads = False

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 alphas: Sequence[float] = DEFAULT_ALPHAS, decim: int = 1) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs)
        self.decim = int(decim)
        self.alphas = tuple(float(a) for a in alphas)
        n_in = n_chans * len(range(0, n_times, self.decim))
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("scale", torch.ones(n_in))
        self.register_buffer("alpha", torch.tensor(float("nan")))
        self.linear = nn.Linear(n_in, n_outputs)

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :: self.decim].flatten(1)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear((self.flatten(x) - self.mean) / self.scale)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
            score: Callable[[torch.Tensor, torch.Tensor], float]) -> dict[float, float]:
        """Fit on (x, y) for every alpha; keep the one whose validation ``score(pred, y_val)``
        is highest (the first of equal ones) and set the ``alpha`` buffer to it
        (:meth:`BrainEncoder.fit`). Returns the validation score of every alpha.
        """
        dev = x.device
        feats = self.flatten(x).double()
        self.mean.copy_(feats.mean(0).float())
        self.scale.copy_(feats.std(0).clamp_min(1e-8).float())
        xs = (feats - self.mean.double()) / self.scale.double()
        y64 = y.double()
        y_mean = y64.mean(0)
        yc = y64 - y_mean
        n, d = xs.shape
        if d <= n:
            s, v = torch.linalg.eigh(xs.T @ xs)
            b = v.T @ (xs.T @ yc)

            def solve(a: float) -> torch.Tensor:
                return v @ (b / (s + a)[:, None])
        else:
            s, u = torch.linalg.eigh(xs @ xs.T)
            c = u.T @ yc

            def solve(a: float) -> torch.Tensor:
                return xs.T @ (u @ (c / (s + a)[:, None]))

        s = s.clamp_min(0)
        unit = float(s.mean()) or 1.0
        scores: dict[float, float] = {}
        best = None
        for rel in self.alphas:
            w = solve(rel * unit)
            self.linear.weight.copy_(w.T.float())
            self.linear.bias.copy_(y_mean.float())
            scores[rel] = float(score(self(x_val.to(dev)), y_val))
            if best is None or scores[rel] > scores[best[0]]:
                best = (rel, w)
        self.linear.weight.copy_(best[1].T.float())
        self.linear.bias.copy_(y_mean.float())
        self.alpha.fill_(best[0])
        return scores

