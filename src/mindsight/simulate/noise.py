"""EEG-like noise: 1/f background from random cortical dipoles, alpha bursts, sensor noise,
blinks on frontal channels, and trial-to-trial gain changes of the evoked response.

The background and the sensor noise are Gaussian with a known covariance (spatial map of the
background dipoles ⊗ circulant 1/f temporal covariance, plus white sensor noise); the ideal
observer (:mod:`mindsight.simulate.observer`) uses exactly that covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mindsight.simulate.head import LeadField, unit_vectors

FRONTAL = ("Fp1", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F1", "Fz", "F2")


@dataclass(frozen=True)
class NoiseModel:
    """A subject's noise sources and levels (all in units of the evoked signal)."""

    background_topography: np.ndarray  # (n_chans, n_background)
    alpha_topography: np.ndarray  # (n_chans, n_alpha)
    blink_topography: np.ndarray  # (n_chans,)
    sfreq: float
    background: float = 1.0  # std of each background dipole's 1/f series
    exponent: float = 1.7  # power ∝ 1/f^exponent
    sensor: float = 0.3
    alpha: float = 0.5
    alpha_freq: float = 10.0
    blink_prob: float = 0.05
    blink_amp: float = 8.0
    gain_sd: float = 0.2  # log-normal trial gain of the evoked response

    def spectrum(self, n_times: int) -> np.ndarray:
        """Amplitude filter of the 1/f process on ``rfftfreq(n_times)``, normalised to unit variance."""
        f = np.fft.rfftfreq(n_times, 1 / self.sfreq)
        h = 1.0 / np.maximum(f, 1.0) ** (self.exponent / 2)
        h[0] = 0.0  # no DC (baseline-corrected data)
        w = np.full(len(h), 2.0)  # each rfft bin stands for itself and its mirror…
        w[0] = 1.0
        if n_times % 2 == 0:
            w[-1] = 1.0  # …except DC and Nyquist
        return h / np.sqrt(np.sum(w * h ** 2) / n_times)

    def temporal_covariance(self, n_times: int) -> np.ndarray:
        """Circulant covariance of the 1/f process (exact for FFT-filtered white noise)."""
        h = self.spectrum(n_times)
        acov = np.fft.irfft(h ** 2, n=n_times)
        idx = (np.arange(n_times)[:, None] - np.arange(n_times)[None, :]) % n_times
        return acov[idx]

    def spatial_covariance(self) -> np.ndarray:
        t = self.background_topography
        return self.background ** 2 * (t @ t.T)

    def sample(self, n: int, n_times: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` noise epochs (n, n_chans, n_times), float32."""
        n_chans, n_bg = self.background_topography.shape
        white = rng.standard_normal((n, n_bg, n_times))
        pink = np.fft.irfft(np.fft.rfft(white, axis=-1) * self.spectrum(n_times), n=n_times, axis=-1)
        out = self.background * np.matmul(self.background_topography, pink)  # (n, chans, times)
        out += self.sensor * rng.standard_normal((n, n_chans, n_times))
        t = np.arange(n_times) / self.sfreq
        if self.alpha > 0:
            n_a = self.alpha_topography.shape[1]
            env = np.abs(np.fft.irfft(np.fft.rfft(rng.standard_normal((n, n_a, n_times)), axis=-1)
                                      * (np.fft.rfftfreq(n_times, 1 / self.sfreq) < 2.0), n=n_times, axis=-1))
            env /= env.std() + 1e-12
            phase = rng.uniform(0, 2 * np.pi, (n, n_a, 1))
            osc = np.sin(2 * np.pi * self.alpha_freq * t + phase)
            out += self.alpha * np.matmul(self.alpha_topography, env * osc)
        blinks = np.flatnonzero(rng.random(n) < self.blink_prob)
        if len(blinks):
            centre = rng.uniform(t[0], t[-1], len(blinks))[:, None]
            shape = np.exp(-0.5 * ((t[None] - centre) / 0.06) ** 2)
            out[blinks] += self.blink_amp * self.blink_topography[None, :, None] * shape[:, None, :]
        return out.astype(np.float32)

    def gains(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.exp(self.gain_sd * rng.standard_normal(n) - self.gain_sd ** 2 / 2).astype(np.float32)


def make_noise(lead: LeadField, subject: int, sfreq: float, seed: int = 0, n_background: int = 60,
               **levels: float) -> NoiseModel:
    rng = np.random.default_rng([seed, 2000 + subject])

    def topo(dipoles: np.ndarray) -> np.ndarray:
        return lead.topography(dipoles, unit_vectors(rng.normal(size=(len(dipoles), 3))))

    rank = lead.posterior_rank()
    bg = topo(rng.choice(len(rank), n_background, replace=False))
    alpha = topo(rng.choice(np.flatnonzero(rank < 0.3), 3, replace=False))
    frontal = np.array([1.0 if c in FRONTAL else 0.0 for c in lead.ch_names])
    frontal += 0.3 * np.exp(-np.maximum(lead.ch_positions[:, 1].max() - lead.ch_positions[:, 1], 0) / 0.03)
    frontal -= frontal.mean()
    return NoiseModel(bg, alpha, frontal / np.abs(frontal).max(), sfreq,
                      alpha_freq=float(rng.normal(10.0, 0.7)), **levels)
