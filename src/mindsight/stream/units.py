"""The unit of the live data against the unit of the training data.

Amplifiers stream volts, microvolts or whitened values; a release may store any of them. A
model fed data a million times smaller than its training data decodes at chance without a
word, so the first stimulus's epoch is compared with the run's training trials (their typical
amplitude, :func:`mindsight.train.scaler.typical_amplitude`) before anything is decoded:

- within a factor of 30: used as they are;
- off by about a power of 1000 (V against µV, T against fT…): scaled by it, reported once;
- anything else: refused with the two amplitudes, so nothing is decoded from data whose scale
  the model never saw. ``--scale`` sets the factor by hand (and skips the check).
"""

from __future__ import annotations

import numpy as np

from mindsight.errors import DataFormatError
from mindsight.train.scaler import typical_amplitude

TOLERANCE = 30.0  # live/training amplitude ratio accepted as the same unit
PREFIX_SLACK = 0.5  # decades (a factor of 3) around a power of 1000 still read as a unit prefix


def training_amplitude(run, fold, n_trials: int = 128) -> float:
    """Typical amplitude of a seeded subset of the fold's training trials (after the run's
    channel pick and crop; before the model's input scaler)."""
    rec = run.training(fold)
    idx = np.sort(np.random.default_rng(0).choice(rec.n_trials, size=min(n_trials, rec.n_trials),
                                                   replace=False))
    return typical_amplitude(rec.select(idx).get_data(copy=True))


def unit_factor(live: float, train: float, where: str = "the live data") -> tuple[float, str | None]:
    """(factor to multiply the live data by, a one-line note or None)."""
    if not (live > 0 and train > 0):
        raise DataFormatError(f"{where} have a typical amplitude of {live:.3g} (training data: {train:.3g}); "
                              "a flat or empty signal cannot be decoded")
    ratio = train / live
    if 1 / TOLERANCE <= ratio <= TOLERANCE:
        return 1.0, None
    decades = np.log10(ratio)
    k = int(np.round(decades / 3))
    if k != 0 and abs(decades - 3 * k) <= PREFIX_SLACK:
        factor = 10.0 ** (3 * k)
        return factor, (f"{where} are about {factor:g} times {'smaller' if k > 0 else 'larger'} than the run's "
                        f"training data (typical amplitude {live:.3g} against {train:.3g}: another unit, "
                        f"e.g. volts against microvolts); they are multiplied by {factor:g} (set --scale to override)")
    raise DataFormatError(
        f"{where} have a typical amplitude of {live:.3g} but the run's training data {train:.3g} "
        f"(ratio {ratio:.3g}, not a unit prefix); the model would decode them at chance. Check the "
        "stream's unit and preprocessing, or set --scale FACTOR")
