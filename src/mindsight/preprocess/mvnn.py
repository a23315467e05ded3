"""Multivariate noise normalisation (MVNN), as in the THINGS-EEG2 preprocessing.

Per session, a noise covariance is estimated within image conditions (so the stimulus-evoked
signal is not whitened away), averaged, and the data are multiplied by its inverse square root.

The official code calls ``sklearn.discriminant_analysis._cov(X, shrinkage='auto')`` (standardise,
Ledoit–Wolf, rescale) once per condition and repetition — millions of tiny calls. Here the same
estimator runs batched over many matrices at once; a test checks it against scikit-learn.
"""

from __future__ import annotations

import numpy as np

from mindsight.errors import DataFormatError


def ledoit_wolf_cov(x: np.ndarray) -> np.ndarray:
    """Shrinkage covariance of each ``x[b]`` (n_samples × n_features), like sklearn's
    ``_cov(x[b], shrinkage='auto')``: standardise features, Ledoit–Wolf, scale back.

    ``x`` has shape (batch, n_samples, n_features); returns (batch, n_features, n_features).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise DataFormatError(f"expected (batch, samples, features), got shape {x.shape}")
    _, n, p = x.shape
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    var = std**2
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2  # StandardScaler keeps their scale at 1
    std = np.where(constant, 1.0, std)
    z = (x - mean) / std
    z = z - z.mean(axis=1, keepdims=True)
    emp = np.einsum("bni,bnj->bij", z, z) / n
    z2 = z**2
    trace = z2.sum(axis=1) / n  # (batch, p): diagonal of emp
    mu = trace.sum(axis=1) / p
    beta_ = (z2.sum(axis=2) ** 2).sum(axis=1)  # sum of the entries of z2.T @ z2
    delta_ = (emp**2).sum(axis=(1, 2))  # = sum((z.T @ z)**2) / n**2
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace.sum(axis=1) + p * mu**2) / p
    beta = np.minimum(beta, delta)
    shrink = np.divide(beta, delta, out=np.zeros_like(beta), where=beta != 0)
    cov = (1.0 - shrink)[:, None, None] * emp
    cov[:, np.arange(p), np.arange(p)] += (shrink * mu)[:, None]
    s = std[:, 0, :]
    return s[:, :, None] * cov * s[:, None, :]


def noise_covariance(epochs: np.ndarray, dim: str = "epochs", batch: int = 2048) -> np.ndarray:
    """Mean within-condition noise covariance of ``epochs`` (conditions, repetitions, ch, times).

    ``dim='time'``: one per time point over the repetitions of a condition (the official
    THINGS-EEG2 script's default, ``--mvnn_dim time``);
    ``dim='epochs'``: one per repetition over its time points (NICE/ATM).
    """
    if epochs.ndim != 4:
        raise DataFormatError(
            f"expected (conditions, repetitions, channels, times), got shape {epochs.shape}"
        )
    n_cond, n_rep, n_ch, n_t = epochs.shape
    if dim == "epochs":
        samples = epochs.reshape(n_cond * n_rep, n_ch, n_t).transpose(0, 2, 1)  # (b, t, ch)
    elif dim == "time":
        samples = epochs.transpose(0, 3, 1, 2).reshape(n_cond * n_t, n_rep, n_ch)  # (b, rep, ch)
    else:
        raise DataFormatError(f"MVNN dimension must be 'epochs' or 'time', got {dim!r}")
    total = np.zeros((n_ch, n_ch))
    for start in range(0, len(samples), batch):
        total += ledoit_wolf_cov(samples[start : start + batch]).sum(axis=0)
    return total / len(samples)


def inverse_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric inverse square root of a covariance matrix (via its eigendecomposition)."""
    cov = (cov + cov.T) / 2
    w, v = np.linalg.eigh(cov)
    if w.min() <= 0:
        raise DataFormatError(
            f"noise covariance is not positive definite (smallest eigenvalue {w.min():.3g}); "
            "a channel may be flat or duplicated"
        )
    return (v / np.sqrt(w)) @ v.T


def whiten(epochs: np.ndarray, whitener: np.ndarray) -> np.ndarray:
    """Apply ``whitener`` (ch × ch) to the channel axis of (..., ch, times) data."""
    return np.einsum("ij,...jt->...it", whitener, epochs)
