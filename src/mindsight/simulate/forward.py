"""The forward model: image features → cortical sources with latencies → 63 scalp channels.

Each feature level drives its own group of dipoles, placed along the posterior→anterior axis as
the visual hierarchy is (low-level most posterior, semantic most anterior), with a level-specific
time course: a smooth bump peaking at the level's latency (low ~100 ms, mid ~170 ms, high
~250 ms, semantic ~400 ms). An image-independent evoked response (P1/N1) and an offset response
at ~200 ms (100 ms after the 100 ms stimulus ends, scaled by the image's low-level features)
complete the signal. A subject's dipoles, orientations and feature weights mix a part shared by
all subjects with a subject-specific part (``shared``), so cross-subject transfer is partial.

The model is linear in the features, so single trials can carry their own features
(:func:`evoked_trials`): with the perceptual front-end each trial shows its image at one of a
few acuity levels (:func:`mindsight.simulate.features.perceived_levels`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mindsight.simulate.head import LeadField, unit_vectors


@dataclass(frozen=True)
class Level:
    name: str
    latency: float  # s, peak of the response
    width: float  # s, standard deviation of the bump
    region: tuple[float, float]  # posterior→anterior rank range of its dipoles (0 = occipital pole)
    n_sources: int
    gain: float  # share of signal amplitude


LEVELS = (  # the ventral stream: occipital pole → lateral occipital → occipito-temporal
    Level("low", 0.10, 0.025, (0.0, 0.12), 6, 1.0),
    Level("mid", 0.17, 0.035, (0.03, 0.22), 6, 0.9),
    Level("high", 0.25, 0.05, (0.08, 0.35), 6, 0.8),
    Level("semantic", 0.40, 0.08, (0.20, 0.55), 6, 0.6),
)
SUPERFICIAL = 0.6  # sources lie in the outer shell (cortex), beyond this fraction of the deepest radius
OFFSET_LATENCY = 0.20


def bump(times: np.ndarray, latency: float, width: float) -> np.ndarray:
    """A Gaussian bump with a small opposite-signed follower (so responses are biphasic)."""
    return np.exp(-0.5 * ((times - latency) / width) ** 2) - 0.4 * np.exp(
        -0.5 * ((times - latency - 2.2 * width) / (1.5 * width)) ** 2)


@dataclass(frozen=True)
class Brain:
    """One subject's sources: per level, scalp maps (n_chans, n_sources) and feature weights."""

    subject: int
    topographies: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]  # level → (n_sources, n_features)
    latency_shift: float  # s, subject-specific
    erp_topography: np.ndarray  # (n_chans, 2): P1 and N1 maps
    offset_topography: np.ndarray  # (n_chans,)


def make_brain(lead: LeadField, subject: int, n_features: dict[str, int], seed: int = 0,
               shared: float = 0.6) -> Brain:
    """Subject ``subject``'s sources; ``shared`` ∈ [0, 1] is the part common to all subjects."""
    common, own = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1000 + subject])
    rank = lead.posterior_rank()
    radius = np.linalg.norm(lead.positions, axis=1)
    rank = np.where(radius >= SUPERFICIAL * radius.max(), rank, np.inf)  # deep dipoles never drawn
    a, b = np.sqrt(shared), np.sqrt(1 - shared)
    topo, weights = {}, {}

    def sources(lo: float, hi: float, n: int) -> np.ndarray:
        pool = np.flatnonzero((rank >= lo) & (rank <= hi))
        base = common.choice(pool, n, replace=False)
        # each subject's dipole: the shared one, or (with probability 1 − shared) a neighbour
        moved = own.random(n) > shared
        near = np.argsort(np.linalg.norm(lead.positions[pool, None] - lead.positions[base], axis=-1), axis=0)[1:6]
        pick = pool[near[own.integers(0, near.shape[0], n), np.arange(n)]]
        return np.where(moved, pick, base)

    def orient(n: int) -> np.ndarray:
        return unit_vectors(a * unit_vectors(common.normal(size=(n, 3)))
                            + b * unit_vectors(own.normal(size=(n, 3))))

    for lv in LEVELS:
        dip = sources(*lv.region, lv.n_sources)
        topo[lv.name] = lead.topography(dip, orient(lv.n_sources))
        k = n_features[lv.name]
        w = a * common.normal(size=(lv.n_sources, k)) + b * own.normal(size=(lv.n_sources, k))
        weights[lv.name] = lv.gain * w / np.sqrt(k)
    erp = lead.topography(sources(0.0, 0.3, 2), orient(2))
    offset = lead.topography(sources(0.0, 0.2, 1), orient(1))[:, 0]
    return Brain(subject, topo, weights, float(own.normal(0, 0.01)), erp, offset)


def evoked(brain: Brain, features: dict[str, np.ndarray], times: np.ndarray,
           erp_gain: float = 1.0) -> np.ndarray:
    """Noise-free responses (n_images, n_chans, n_times) to images with ``features[level]``
    (n_images, n_features), z-scored across images."""
    n_img = len(next(iter(features.values())))
    n_chans = brain.erp_topography.shape[0]
    out = np.zeros((n_img, n_chans, len(times)), dtype=np.float64)
    t = times - brain.latency_shift
    for lv in LEVELS:
        amp = features[lv.name] @ brain.weights[lv.name].T  # (n_img, n_sources)
        scalp = amp @ brain.topographies[lv.name].T  # (n_img, n_chans)
        out += scalp[:, :, None] * bump(t, lv.latency, lv.width)[None, None, :]
    erp = (brain.erp_topography[:, 0:1] * bump(t, 0.10, 0.02) - brain.erp_topography[:, 1:2] * bump(t, 0.17, 0.03))
    out += erp_gain * erp[None]
    lum = features["low"][:, :1]  # offset response scales with the first low-level component
    out += (0.5 + 0.3 * lum)[:, :, None] * brain.offset_topography[None, :, None] * \
        bump(t, OFFSET_LATENCY, 0.03)[None, None, :]
    return out.astype(np.float32)


def evoked_trials(brain: Brain, features: dict[str, np.ndarray], images: np.ndarray, acuity: np.ndarray,
                  times: np.ndarray, erp_gain: float = 1.0, chunk: int = 512) -> np.ndarray:
    """Noise-free responses (n_trials, n_chans, n_times) of single trials: trial i shows image
    ``images[i]`` at acuity level ``acuity[i]``, with ``features[level]`` of shape (n_acuity,
    n_images, n_features); computed ``chunk`` trials at a time (memory)."""
    images, acuity = np.asarray(images), np.asarray(acuity)
    out = np.empty((len(images), brain.erp_topography.shape[0], len(times)), dtype=np.float32)
    for s in range(0, len(images), chunk):
        rows = slice(s, s + chunk)
        out[rows] = evoked(brain, {k: v[acuity[rows], images[rows]] for k, v in features.items()}, times, erp_gain)
    return out
