"""The ideal observer: the best n-way retrieval any decoder could reach on a simulated test set.

It knows every test image's noise-free response and the noise covariance Σ = A ⊗ B + σ² I
(background dipoles' spatial covariance ⊗ the 1/f temporal covariance, plus sensor noise), and
picks the image with the highest Gaussian likelihood of the observed, repetition-averaged EEG.
With Gaussian noise this is Bayes-optimal. Σ is diagonalised through the eigenvectors of A and
B (Kronecker structure), so whitening costs two small matrix products per trial. Alpha bursts,
blinks and gain changes are not in Σ; the observer treats them as extra noise, so a decoder could
in principle exploit their non-Gaussian shape, but none that learns from data comes close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mindsight.simulate.noise import NoiseModel


@dataclass(frozen=True)
class Whitener:
    spatial: np.ndarray  # (n_chans, n_chans) eigenvectors of A
    temporal: np.ndarray  # (n_times, n_times) eigenvectors of B
    scale: np.ndarray  # (n_chans, n_times) 1 / sqrt(eigenvalues of Σ)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Whitened epochs (n, n_chans · n_times)."""
        z = self.spatial.T @ x.astype(np.float64) @ self.temporal
        return (z * self.scale).reshape(len(x), -1)


def whitener(noise: NoiseModel, n_total: int, keep: slice, n_averaged: int = 1) -> Whitener:
    """Whitener of the noise of the mean of ``n_averaged`` epochs, cropped to samples ``keep``
    of the ``n_total`` generated ones."""
    a, ua = np.linalg.eigh(noise.spatial_covariance())
    b, ub = np.linalg.eigh(noise.temporal_covariance(n_total)[keep, keep])
    var = (np.clip(a, 0, None)[:, None] * np.clip(b, 0, None)[None, :] + noise.sensor ** 2) / n_averaged
    return Whitener(ua, ub, 1.0 / np.sqrt(var))


def decide(whiten: Whitener, templates: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Rank of the true template for each trial (trial i shows template ``i % n_templates``);
    0 = the observer picks the right image."""
    t = whiten(templates)
    y = whiten(trials)
    # squared distance up to a per-trial constant: |t|^2 - 2 y·t
    score = (t ** 2).sum(1)[None, :] - 2.0 * y @ t.T
    true = np.arange(len(trials)) % len(templates)
    return (score < score[np.arange(len(trials)), true][:, None]).sum(1)


def two_way_accuracy_white(distance: float, sigma: float) -> float:
    """Closed form for two templates at Euclidean ``distance`` in white Gaussian noise σ:
    Φ(d / 2σ). Used to test :func:`decide`."""
    from scipy.stats import norm

    return float(norm.cdf(distance / (2 * sigma)))
