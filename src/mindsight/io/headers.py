"""One subject's partition described from its file headers only: no EEG/MEG value is read.

:func:`read_header` returns a *zero-trial* :class:`~mindsight.recording.Recording` with the
partition's real channel names, sampling rate and sample times, so ``pick`` and ``crop`` apply
to it exactly as to the data. Each dataset's :meth:`~mindsight.io.datasets.Dataset.header`
reads:

- THINGS-EEG2 ``official`` / ``nice-atm``: the dict's ``ch_names`` and ``times`` and the data's
  shape through the lazy unpickler (arrays of 1 MB or more stay memory maps, never touched);
- ``things-eeg2-dataset``: the NPY header (a memory map), the meta JSON and the small
  ``img_conditions`` file;
- THINGS-MEG ``official``: the epochs file's header (``mne.read_epochs(preload=False)``) and the
  CSV, joined and selected as the reader does;
- THINGS-MEG ``atm``: the pickle with large tensors/arrays skipped or memory-mapped
  (:func:`~mindsight.io.things_meg.read_atm_header`);
- EEG-ImageNet: its cached trial table (:func:`~mindsight.io.eeg_imagenet.read_index`; the
  ``.pth`` is read once, to build it, and never converted here).

Nothing is converted to the float32 cache. Every check the readers make on these headers (the
time-axis rule, channel counts, image counts and order) is made here by the same functions, so a
partition that passes is one the reader accepts up to its values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.errors import DataFormatError
from mindsight.io.datasets import DEFAULT_TEST_SET, dataset_for
from mindsight.io.images import ImageSet
from mindsight.recording import PARTITIONS, Recording, Trials


def read_header(
    root: str | os.PathLike,
    subject: int,
    partition: str,
    images: ImageSet | None = None,
    *,
    test_set: str = DEFAULT_TEST_SET,
    cache_dir: str | os.PathLike | None = None,
) -> Recording:
    """One subject's ``train`` or ``test`` partition under ``root`` as a zero-trial recording
    (data of shape (0, n_chans, n_times)) with its real ``ch_names``, ``sfreq`` and ``times``.

    Finds the file as :func:`~mindsight.io.datasets.read_recording` does (same errors for a
    missing or ambiguous file) and reads headers only (:meth:`Dataset.header`). With ``images``
    the number (and for the official THINGS-MEG layout the order) of the partition's images is
    checked against it. ``description`` holds ``dataset``, ``layout``, ``source`` (the file) and
    ``header_only``. ``cache_dir`` keys a cached header (THINGS-MEG epochs, EEG-ImageNet's
    trial index), never data.
    """
    if partition not in PARTITIONS:
        raise DataFormatError(f"partition must be 'train' or 'test', got {partition!r}")
    root = Path(root)
    dataset = dataset_for(root, test_set)
    return dataset.header(root, subject, partition, images, test_set=dataset.resolve_test_set(test_set),
                          cache_dir=cache_dir)


def empty_recording(ch_names: list[str], sfreq: float, times: np.ndarray, subject: int, partition: str,
                    concept_names: Any, description: dict[str, Any]) -> Recording:
    """A recording without trials that carries the partition's axes (what headers return)."""
    none = np.empty(0, dtype=np.int64)
    return Recording(
        data=np.empty((0, len(ch_names), len(times)), dtype=np.float32),
        ch_names=tuple(ch_names), sfreq=sfreq, times=times,
        trials=Trials.build(none, none, subject), partition=partition,
        concept_names=concept_names, description={**description, "header_only": True},
    )


def numeric_shape(array: Any, key: str, path: Path) -> tuple[int, ...]:
    """The shape of a numeric array read lazily (a memory map: no value is touched)."""
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise DataFormatError(
            f"{path}: {key!r} should be a numeric array, found {type(array).__name__}"
            + (f" {array.dtype}" if isinstance(array, np.ndarray) else "")
        )
    return tuple(int(n) for n in array.shape)
