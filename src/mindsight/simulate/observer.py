"""The ideal observer: the best n-way retrieval any decoder could reach on a simulated test set.

It knows every test image's noise-free response and the noise covariance Σ = A ⊗ B + σ² I
(background dipoles' spatial covariance ⊗ the 1/f temporal covariance, plus sensor noise), and
picks the image with the highest Gaussian likelihood of the observed, repetition-averaged EEG.
With Gaussian noise this is Bayes-optimal. Σ is diagonalised through the eigenvectors of A and
B (Kronecker structure), so whitening costs two small matrix products per trial. Alpha bursts,
blinks and gain changes are not in Σ; the observer treats them as extra noise, so a decoder could
in principle exploit their non-Gaussian shape, but none that learns from data comes close.

With the perceptual front-end each repetition shows the image at one of L acuity levels, drawn
uniformly, so the noise-free part of the mean of R repetitions is Σ_l (n_l / R)·s_l for level
counts (n_1 … n_L) ~ multinomial(R, 1/L). The Bayes-optimal observer (:class:`MixtureObserver`)
scores each candidate by the log of the mixture Σ_n P(n)·N(y; Σ_l (n_l / R)·s_l, Σ / R), exactly:
with whitened level templates, ‖y − t_n‖² = ‖y‖² − 2 Σ_l (n_l / R)(y·s_l) + Σ_lm (n_l n_m / R²)(s_l·s_m),
over all C(R + L − 1, L − 1) count vectors, by log-sum-exp. With L = 1 it ranks as :func:`decide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

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


def level_counts(n_reps: int, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Every count vector (K, n_levels) of ``n_reps`` repetitions over ``n_levels`` equally
    likely levels, K = C(n_reps + n_levels − 1, n_levels − 1), and its multinomial log-probability."""
    from scipy.special import gammaln

    counts = []
    for bars in combinations(range(n_reps + n_levels - 1), n_levels - 1):  # stars and bars
        edges = np.r_[-1, bars, n_reps + n_levels - 1]
        counts.append(np.diff(edges) - 1)
    c = np.asarray(counts, dtype=np.int64).reshape(-1, n_levels)
    logp = gammaln(n_reps + 1) - gammaln(c + 1).sum(1) - n_reps * np.log(n_levels)
    return c, logp


class MixtureObserver:
    """The ideal observer when every repetition shows the image at one of L equally likely
    acuity levels: ``templates`` (L, n_templates, n_chans, n_times) are the level responses,
    ``whiten`` the whitener of the mean of ``n_reps`` epochs. Templates are whitened once."""

    def __init__(self, whiten: Whitener, templates: np.ndarray, n_reps: int, max_block: int = 20_000_000) -> None:
        self.whiten = whiten
        self.t = np.stack([whiten(lv) for lv in templates])  # (L, n, d)
        counts, self.logp = level_counts(n_reps, len(templates))
        self.w = counts / n_reps  # (K, L) level weights of the mean
        gram = np.einsum("lcd,mcd->clm", self.t, self.t)  # (n, L, L): s_l·s_m per candidate
        self.half_norm = 0.5 * np.einsum("kl,clm,km->ck", self.w, gram, self.w)  # (n, K): ½‖t_n‖²
        self.max_block = max_block

    def log_likelihood(self, trials: np.ndarray) -> np.ndarray:
        """(n_trials, n_templates) log-likelihood of each candidate, up to a per-trial constant."""
        from scipy.special import logsumexp

        y = self.whiten(trials)
        dots = np.stack([y @ lv.T for lv in self.t], axis=2)  # (m, n, L): y·s_l
        n, k = self.half_norm.shape
        step = max(1, self.max_block // (n * k))
        out = np.empty((len(y), n))
        for s in range(0, len(y), step):
            # log P(n) + y·t_n − ½‖t_n‖² for each count vector n, then log Σ exp
            score = dots[s : s + step] @ self.w.T - self.half_norm[None] + self.logp[None, None]
            out[s : s + step] = logsumexp(score, axis=2)
        return out

    def __call__(self, trials: np.ndarray) -> np.ndarray:
        """Rank of the true template for each trial (trial i shows template ``i % n_templates``)."""
        ll = self.log_likelihood(trials)
        true = np.arange(len(trials)) % ll.shape[1]
        return (ll > ll[np.arange(len(trials)), true][:, None]).sum(1)


def decide_mixture(whiten: Whitener, templates: np.ndarray, trials: np.ndarray, n_reps: int) -> np.ndarray:
    """:func:`decide` for level templates (L, n_templates, n_chans, n_times) and means of
    ``n_reps`` repetitions, each at a uniformly drawn level (see :class:`MixtureObserver`)."""
    return MixtureObserver(whiten, templates, n_reps)(trials)


def two_way_accuracy_white(distance: float, sigma: float) -> float:
    """Closed form for two templates at Euclidean ``distance`` in white Gaussian noise σ:
    Φ(d / 2σ). Used to test :func:`decide`."""
    from scipy.stats import norm

    return float(norm.cdf(distance / (2 * sigma)))
