"""Per-channel input scaling, fitted on the training partition and saved with the model.

Brain data arrive in whatever unit their writer chose: whitened (≈ 1), microvolts (≈ 10),
volts (≈ 1e-5, as MNE and the raw THINGS-EEG2 release store EEG) or tesla (≈ 1e-12, MEG).
Encoders initialised for unit-scale inputs learn nothing from 1e-5: their first layer's output
is its bias, the loss barely moves, and the model lands exactly at chance without a word. So
every learned encoder reads its input through an :class:`InputScaler`:

- ``robust`` (default): per channel, subtract the median and divide by the interquartile range
  (scikit-learn's ``RobustScaler``), then clamp at ±``clamp`` (20, as Benchetrit et al.);
- ``standard``: per channel, subtract the mean and divide by the standard deviation
  (scikit-learn's ``StandardScaler``), then clamp;
- ``whiten``: subtract the per-channel median, then multiply by the inverse square root of the
  channel covariance (Ledoit–Wolf shrinkage within each training trial over its time points,
  averaged over trials: the MVNN "epochs" variant of NICE/ATM's preprocessing, here fitted on
  the training trials of all sessions together), then clamp. For data that were never whitened
  (``preprocess --mvnn none``, MNE files): per-channel scaling fixes the unit, but only
  whitening removes the correlated noise MVNN removes;
- ``none``: the data as stored; refused when their typical amplitude is far from 1 (see
  :func:`check_unscaled`), where an encoder would silently train to chance.

The statistics come from the training trials only (never the validation or test data), are
buffers of the model (so ``model.safetensors`` carries them), and are applied wherever the
model reads brain data: training, evaluation, the analyses, reconstruction.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mindsight.config import SCALERS
from mindsight.errors import DataFormatError

MAX_FIT_VALUES = 10_000_000  # values used to fit, all channels together (seeded subset of trials)
UNSCALED_RANGE = (1e-3, 1e4)  # typical amplitudes an encoder trains on without a scaler
# mean |correlation| between channels above which data look un-whitened (MVNN-whitened demo
# data: 0.04; the same recordings without MVNN: 0.40)
CORRELATED = 0.2


def _sample(x: torch.Tensor | np.ndarray, max_values: int = MAX_FIT_VALUES) -> np.ndarray:
    """(values, channels) float64 from a seeded subset of the trials of ``x`` (trials, C, T)."""
    n, c, t = x.shape
    keep = max(1, min(n, max_values // max(c * t, 1)))
    idx = np.sort(np.random.default_rng(0).choice(n, size=keep, replace=False)) if keep < n else None
    if isinstance(x, torch.Tensor):
        part = (x if idx is None else x[torch.from_numpy(idx).to(x.device)]).detach().cpu().numpy()
    else:
        part = np.asarray(x if idx is None else x[idx])
    return part.astype(np.float64).transpose(0, 2, 1).reshape(-1, c)


def typical_amplitude(values: np.ndarray) -> float:
    """A robust spread of all ``values`` (median absolute deviation × 1.4826; 1 for N(0, 1))."""
    values = np.asarray(values).ravel()
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def check_unscaled(x: torch.Tensor | np.ndarray, where: str = "the training data") -> None:
    """Refuse unscaled data whose amplitude would leave an encoder at chance (volts, tesla)."""
    amp = typical_amplitude(_sample(x, MAX_FIT_VALUES // 4))
    lo, hi = UNSCALED_RANGE
    if not lo <= amp <= hi:
        unit = " (volts or tesla?)" if amp < lo else ""
        raise DataFormatError(
            f"data.scaler is 'none' but {where} have a typical amplitude of {amp:.3g}{unit}; an "
            f"encoder trains to chance on values outside [{lo:g}, {hi:g}]. Use data.scaler: robust "
            "(the default) or standard, or whiten/rescale the data"
        )


def channel_correlation(sample: np.ndarray) -> float:
    """Mean |Pearson r| between different channels of ``sample`` (values, channels)."""
    c = sample.shape[1]
    if c < 2:
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.nan_to_num(np.corrcoef(sample.T))
    return float((np.abs(r).sum() - np.trace(np.abs(r))) / (c * c - c))


def _note_if_unwhitened(sample: np.ndarray) -> None:
    from mindsight.output import logger

    r = channel_correlation(sample[:: max(1, len(sample) // 200_000)])
    if r > CORRELATED:
        logger.info(
            f"the training data's channels are strongly correlated (mean |r| {r:.2f}): they look "
            "un-whitened (no MVNN). data.scaler: whiten fits MVNN's whitener on the training "
            "trials (on un-whitened demo data: ATM 31 % -> 44 % top-1)")


class InputScaler(nn.Module):
    """``(x − center) / scale`` per channel (``whiten``: ``W @ (x − center)``), clamped at
    ±``clamp``; identity for ``none``.

    ``center`` and ``scale`` (``whiten``: ``center`` and ``whitener``) are buffers, saved in
    checkpoints; for ``none`` there are none, so checkpoints of unscaled models hold exactly the
    encoder's weights.
    """

    def __init__(self, n_chans: int, kind: str = "robust", clamp: float | None = 20.0) -> None:
        super().__init__()
        if kind not in SCALERS:
            raise DataFormatError(f"data.scaler must be one of {SCALERS}, got {kind!r}")
        self.kind = kind
        self.clamp = None if clamp is None else float(clamp)
        if kind != "none":
            self.register_buffer("center", torch.zeros(n_chans))
        if kind == "whiten":
            self.register_buffer("whitener", torch.eye(n_chans))
        elif kind != "none":
            self.register_buffer("scale", torch.ones(n_chans))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, clamp={self.clamp}"

    @torch.no_grad()
    def fit(self, x: torch.Tensor | np.ndarray) -> InputScaler:
        """Statistics per channel from training epochs ``x`` (trials, channels, times)."""
        if self.kind == "none":
            check_unscaled(x)
            return self
        from sklearn.preprocessing import RobustScaler, StandardScaler

        sample = _sample(x)
        if not np.isfinite(sample).all():
            raise DataFormatError("the training data hold NaN or infinite values; fix or drop those trials")
        if self.kind == "whiten":
            return self._fit_whitener(x, sample)
        _note_if_unwhitened(sample)
        est = (RobustScaler() if self.kind == "robust" else StandardScaler()).fit(sample)
        center = est.center_ if self.kind == "robust" else est.mean_
        spread = float(np.std((sample - center) / est.scale_))
        if spread < UNSCALED_RANGE[0]:  # scikit-learn leaves spreads below ~1e-14 unscaled
            raise DataFormatError(
                f"after {self.kind} scaling the training data still have a standard deviation of "
                f"{spread:.3g}: every channel is (nearly) constant. Check the file's values and unit"
            )
        self.center.copy_(torch.as_tensor(center))
        self.scale.copy_(torch.as_tensor(est.scale_))
        return self

    def _fit_whitener(self, x: torch.Tensor | np.ndarray, sample: np.ndarray) -> InputScaler:
        from mindsight.preprocess.mvnn import inverse_sqrt, noise_covariance

        n_chans = sample.shape[1]
        trials = sample.reshape(-1, x.shape[2], n_chans).transpose(0, 2, 1)  # (trials, C, T)
        center = np.median(sample, axis=0)
        cov = noise_covariance((trials - center[:, None])[:, None], "epochs")
        try:
            whitener = inverse_sqrt(cov)
        except DataFormatError as exc:
            raise DataFormatError(f"data.scaler 'whiten': {exc}") from None
        self.center.copy_(torch.as_tensor(center))
        self.whitener.copy_(torch.as_tensor(whitener))
        return self

    def neutral(self) -> torch.Tensor | float:
        """The raw input value of each channel that the scaler maps to 0 (for masking)."""
        return 0.0 if self.kind == "none" else self.center

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        if self.kind == "whiten":
            z = torch.matmul(self.whitener, x - self.center[:, None])
        else:
            z = (x - self.center[:, None]) / self.scale[:, None]
        return z if self.clamp is None else z.clamp(-self.clamp, self.clamp)
