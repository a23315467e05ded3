"""Checks a run makes before training: will ``evaluate`` find a test partition it can use?

Training reads only the training partition, so a missing or mismatched test file used to show
up at ``mindsight evaluate``, after hours of training. :func:`check_partitions` finds it first,
from file headers only (:func:`mindsight.io.read_header`): no test value is read or cached.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.config import RunConfig
from mindsight.errors import ConfigError, DataFormatError, MissingFileError
from mindsight.io.headers import read_header
from mindsight.io.images import ImageSet
from mindsight.recording import Recording

TIME_TOLERANCE = 0.1  # in samples: sample times may differ by float rounding, not by a shift
_TRAINING_FILE = re.compile(r"^preprocessed_eeg_training(_sub-\d+)?\.npy$")


def check_partitions(cfg: RunConfig, images: ImageSet, *, cache_dir: Any = None) -> None:
    """Refuse a run whose test partitions ``evaluate`` could not use, before any training.

    For every fold: each training subject's training file and the test subject's test file
    exist; after the configured channel pick (``data.channels``, in that order) and crop
    (``data.tmin``/``data.tmax``, inclusive) the test partition has the training partition's
    channels in the same order, its sampling rate and its sample times (within
    :data:`TIME_TOLERANCE` of a sample); and every test image is on disk. Reads headers only.
    One :class:`DataFormatError` / :class:`MissingFileError` names both files and the
    difference.
    """
    from mindsight.train.run import folds  # run.py calls this module

    if cfg.data.eeg is None:
        raise ConfigError("config: data.eeg is not set (pass --eeg DIR)")
    check_test_images(images)
    fold_list = folds(cfg)
    train = {s: _window(cfg, read_header(cfg.data.eeg, s, "train", images, cache_dir=cache_dir))
             for s in sorted({s for f in fold_list for s in f.train_subjects})}
    tested: set[int] = set()
    for fold in fold_list:
        if fold.test_subject in tested:
            continue
        tested.add(fold.test_subject)
        first = train[fold.train_subjects[0]]
        test = _test_header(cfg, fold.test_subject, images, train.get(fold.test_subject, first),
                            cache_dir)
        test = _window(cfg, test, against=first)
        for s in fold.train_subjects:
            check_matching_partitions(train[s], test)


def check_test_images(images: ImageSet) -> None:
    """Every test image must be on disk: evaluation scores each test trial against all of them."""
    part = images["test"]
    missing = [p for p in part.paths if not p.is_file()]
    if missing:
        raise MissingFileError(
            f"{part.root}: {len(missing)} of {len(part)} test image(s) are missing, e.g. "
            f"{missing[0]}; evaluation ranks every test trial against all test images "
            "(restore them or pass the complete image set as data.images)"
        )


def check_matching_partitions(train: Recording, test: Recording) -> None:
    """The test partition must have the training partition's channels (same order), sampling
    rate and sample times: a model reads its input by position, so anything else would be
    evaluated on misaligned data. Works on header-only and on loaded recordings."""
    difference = (_channel_difference(train.ch_names, test.ch_names)
                  or _rate_difference(train.sfreq, test.sfreq)
                  or _time_difference(train.times, test.times, train.sfreq))
    if difference:
        raise DataFormatError(
            f"test partition {_source(test)} does not match the training partition "
            f"{_source(train)}: {difference}"
        )


def _source(rec: Recording) -> str:
    return str(rec.description.get("source", "(in memory)"))


def _window(cfg: RunConfig, rec: Recording, against: Recording | None = None) -> Recording:
    """``rec`` with the run's channel pick and crop, as ``load_partition`` applies them."""
    try:
        if cfg.data.channels:
            rec = rec.pick(cfg.data.channels)
        if cfg.data.tmin is not None or cfg.data.tmax is not None:
            rec = rec.crop(cfg.data.tmin, cfg.data.tmax)
    except DataFormatError as exc:
        role = "training" if against is None else "test"
        beside = "" if against is None else f" (training partition {_source(against)})"
        raise DataFormatError(
            f"{role} partition {_source(rec)}{beside}: {exc} (data.channels, data.tmin, "
            "data.tmax)"
        ) from None
    return rec


def _test_header(cfg: RunConfig, subject: int, images: ImageSet, own_train: Recording,
                 cache_dir: Any) -> Recording:
    """The test subject's test partition header; a missing file names the training file it
    should sit beside."""
    try:
        return read_header(cfg.data.eeg, subject, "test", images, test_set=cfg.data.test_set,
                           cache_dir=cache_dir)
    except MissingFileError as exc:
        expected = expected_test_file(Path(_source(own_train)))
        where = f"expected {expected}" if expected else "expected beside it"
        raise MissingFileError(
            f"test partition of sub-{subject:02d} not found ({where}) for the training "
            f"partition {_source(own_train)}: {exc}"
        ) from None


def expected_test_file(train_file: Path) -> Path | None:
    """Where the test partition of ``train_file`` sits in its layout (None when unknown)."""
    from mindsight.io.things_meg import ATM_FILES

    if train_file.name == ATM_FILES["train"]:
        return train_file.with_name(ATM_FILES["test"])
    if m := _TRAINING_FILE.match(train_file.name):
        return train_file.with_name(f"preprocessed_eeg_test{m.group(1) or ''}.npy")
    return None


def _channel_difference(train: tuple[str, ...], test: tuple[str, ...]) -> str | None:
    if train == test:
        return None
    missing = [c for c in train if c not in test]
    extra = [c for c in test if c not in train]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"channel(s) missing from the test partition: {_names(missing)}")
        if extra:
            parts.append(f"channel(s) only in the test partition: {_names(extra)}")
        return (f"{'; '.join(parts)} ({len(test)} vs {len(train)} channels); pick the common "
                "ones with data.channels")
    i = next(k for k, (a, b) in enumerate(zip(train, test, strict=True)) if a != b)
    return (f"same channels in a different order (first difference at position {i}: "
            f"{test[i]!r} in the test partition, {train[i]!r} in training); set data.channels "
            "to read both in one order")


def _names(names: list[str]) -> str:
    return str(names[:8])[:-1] + (f", … {len(names) - 8} more]" if len(names) > 8 else "]")


def _rate_difference(train: float, test: float) -> str | None:
    if math.isclose(train, test, rel_tol=1e-6):
        return None
    return f"sampling rate {test:g} Hz vs {train:g} Hz (test vs training)"


def _time_difference(train: np.ndarray, test: np.ndarray, sfreq: float) -> str | None:
    span = lambda t: f"{t[0]:.3f}…{t[-1]:.3f} s ({len(t)} samples)"  # noqa: E731
    if len(train) != len(test):
        return (f"time axis {span(test)} vs {span(train)} (test vs training); set data.tmin "
                "and data.tmax to a window both cover")
    off = np.flatnonzero(np.abs(test - train) > TIME_TOLERANCE / sfreq)
    if off.size == 0:
        return None
    i = int(off[0])
    return (f"sample {i} is at {test[i]:.4f} s vs {train[i]:.4f} s (test vs training; time "
            f"axis {span(test)} vs {span(train)})")
