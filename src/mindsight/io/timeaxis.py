"""The time of each sample, from a file's ``times`` and the number of samples its data have.

Every reader (and ``mindsight info``) goes through :func:`epoch_times`, so one documented rule
decides when a ``times`` that disagrees with the data is accepted.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mindsight.errors import DataFormatError


def epoch_times(times: np.ndarray, n_times: int, source: str | os.PathLike) -> np.ndarray:
    """The ``n_times`` sample times of data stored beside ``times`` (from file ``source``).

    The rule: equal lengths use ``times`` as they are. A longer ``times`` is accepted only when
    its last ``n_times`` values start at 0 s (within half a sample): the data are then the
    post-stimulus tail of a longer epoch, which is how the NICE/ATM THINGS-EEG2 release stores
    them (epochs of -0.2..1.0 s = 300 samples, ``data[..., 50:]`` kept, all 300 times saved).
    Anything else (a longer ``times`` whose tail starts elsewhere, or fewer times than
    samples) is a :class:`DataFormatError`, because guessing which times belong to the data
    would silently shift every sample.
    """
    times = np.asarray(times, dtype=np.float64).ravel()
    if n_times < 1:
        raise DataFormatError(f"{source}: the data have no samples ({n_times} time points)")
    if len(times) == n_times:
        return times
    span = f"{len(times)} values" + (f" ({times[0]:.3f}…{times[-1]:.3f} s)" if len(times) else "")
    if len(times) < n_times:
        raise DataFormatError(
            f"{source}: 'times' has {span} but the data have {n_times} samples; re-export the "
            "file with one time per sample"
        )
    step = float(np.median(np.diff(times)))
    tail = times[-n_times:]
    if step > 0 and abs(tail[0]) < step / 2:
        return tail
    raise DataFormatError(
        f"{source}: 'times' has {span} but the data have {n_times} samples; mindsight accepts "
        "a longer 'times' only when the data are its post-stimulus tail starting at 0 s (the "
        "NICE/ATM release: 300 values for 250 samples); re-export the file with matching 'times'"
    )


def sfreq_from_times(times: np.ndarray, source: str | os.PathLike) -> float:
    """The sampling rate of evenly spaced, increasing sample ``times`` (of file ``source``)."""
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or len(times) < 2:
        raise DataFormatError(f"{source}: 'times' must hold at least 2 values, got shape {times.shape}")
    step = np.diff(times)
    if np.any(step <= 0) or not np.allclose(step, step.mean(), rtol=1e-3, atol=1e-7):
        raise DataFormatError(f"{source}: 'times' are not evenly spaced and increasing")
    return float(np.round(1.0 / step.mean(), 6))


def time_row(times: Any, n_times: int, source: Any) -> dict[str, Any]:
    """``{'sfreq', 'tmin', 'tmax'}`` of a file's data for ``mindsight info``, or, when its
    ``times`` disagree with the data (:func:`epoch_times`), a ``note`` with the reason: ``info``
    still lists the file and its shape, and the readers refuse it with the same message."""
    try:
        times = epoch_times(times, n_times, source)
    except DataFormatError as exc:
        return {"note": str(exc)}
    sfreq = 1.0 / float(np.mean(np.diff(times))) if len(times) > 1 else float("nan")
    return {"sfreq": round(sfreq, 3), "tmin": round(float(times[0]), 4), "tmax": round(float(times[-1]), 4)}
