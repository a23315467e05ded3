"""The low-level pathway: brain data → latent of the generator's image autoencoder → blurry image.

As Benchetrit et al.'s AutoKL branch and ATM's blurry image: a ridge regression (closed form,
strength chosen on the validation concepts) from the flattened epoch to the flattened latent.
Decoded, the predicted latent is a blurry picture with the right layout and colours, which then
initialises generation (img2img). Optional post-processing (Benchetrit et al.): z-score each
predicted latent dimension across the predicted set, then give it the mean and standard
deviation of the training latents, so the generator receives in-distribution latents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mindsight.encoders.linear import Ridge
from mindsight.errors import DataFormatError
from mindsight.train.checkpoint import load_tensors, save_tensors


class LowLevelDecoder:
    """fit(epochs, latents) / predict(epochs) → latents (n, *latent_shape)."""

    def __init__(self, n_chans: int, n_times: int, sfreq: float, latent_shape: tuple[int, ...],
                 *, decim: int = 2, device: str = "cpu") -> None:
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.n_chans, self.n_times, self.sfreq, self.decim = n_chans, n_times, float(sfreq), int(decim)
        n_out = int(torch.tensor(self.latent_shape).prod())
        self.ridge = Ridge(n_chans, n_times, sfreq, n_out, decim=decim).to(device)
        self.device = device
        self.register = {"mean": torch.zeros(n_out, device=device), "std": torch.ones(n_out, device=device)}

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1:] != (self.n_chans, self.n_times):
            raise DataFormatError(f"low-level decoder expects epochs (n, {self.n_chans}, {self.n_times}), "
                                  f"got {tuple(x.shape)}")

    def fit(self, x: torch.Tensor, latents: torch.Tensor, x_val: torch.Tensor,
            latents_val: torch.Tensor) -> dict[str, Any]:
        """Closed-form ridge for every strength; keep the one with the lowest validation MSE."""
        self._check(x)
        self._check(x_val)
        y, y_val = latents.flatten(1).to(self.device).float(), latents_val.flatten(1).to(self.device).float()
        self.register = {"mean": y.mean(0), "std": y.std(0).clamp_min(1e-6)}
        scores = self.ridge.fit(x.to(self.device).float(), y, x_val.to(self.device).float(), y_val,
                                lambda pred, target: -float((pred - target).pow(2).mean()))
        with torch.no_grad():
            pred = self.ridge(x_val.to(self.device).float())
            r = _rowwise_corr(pred, y_val)
        return {"alpha": float(self.ridge.alpha), "val_mse": -max(scores.values()),
                "val_latent_corr": float(r.mean()), "alpha_scores": {str(k): v for k, v in scores.items()}}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, postprocess: bool = False) -> torch.Tensor:
        """Predicted latents; ``postprocess`` re-standardises them to the training statistics
        (needs several predictions at once: statistics are taken across them)."""
        self._check(x)
        pred = self.ridge(x.to(self.device).float())
        if postprocess:
            if len(pred) < 2:
                raise DataFormatError("low-level post-processing z-scores across predictions; give it at least 2")
            pred = (pred - pred.mean(0)) / pred.std(0).clamp_min(1e-6)
            pred = pred * self.register["std"] + self.register["mean"]
        return pred.view(len(pred), *self.latent_shape)

    def n_parameters(self) -> int:
        """Weights of the ridge map (flattened epoch → flattened latent), for pipeline sizes."""
        return sum(p.numel() for p in self.ridge.parameters())

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        tensors = {**{f"ridge.{k}": v for k, v in self.ridge.state_dict().items()},
                   **{f"register.{k}": v for k, v in self.register.items()}}
        meta = {"n_chans": self.n_chans, "n_times": self.n_times, "sfreq": self.sfreq,
                "decim": self.decim, "latent_shape": list(self.latent_shape), **(extra or {})}
        return save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> tuple[LowLevelDecoder, dict[str, Any]]:
        tensors, meta = load_tensors(path)
        dec = cls(meta["n_chans"], meta["n_times"], meta["sfreq"], tuple(meta["latent_shape"]),
                  decim=meta["decim"], device=device)
        dec.ridge.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("ridge.")})
        dec.register = {k[9:]: v.to(device) for k, v in tensors.items() if k.startswith("register.")}
        return dec, meta


def _rowwise_corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
