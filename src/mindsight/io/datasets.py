"""One entry point for every dataset: recognise what is under a folder and read it.

:func:`read_recording` reads one subject's partition from THINGS-EEG2 (any layout of
:mod:`mindsight.io.things_eeg2`) or THINGS-MEG (:mod:`mindsight.io.things_meg`), whichever the
folder holds; :func:`read_images` gives the image set whose partitions list the images in the
recordings' order (for the official THINGS-MEG derivative it is built from the trial table).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io import things_eeg2, things_meg
from mindsight.io.images import ImageSet, read_image_set
from mindsight.recording import Recording

TEST_SETS = things_meg.TEST_SETS
EEG2 = "THINGS-EEG2"
MEG = "THINGS-MEG"


def _check_test_set(test_set: str) -> None:
    if test_set not in TEST_SETS:
        raise DataFormatError(f"test_set must be one of {TEST_SETS}, got {test_set!r}")


def find_dataset(root: str | os.PathLike) -> tuple[str | None, list[Any]]:
    """``(dataset, files)`` found under ``root``: THINGS-EEG2 preprocessed files, THINGS-MEG
    files, or ``(None, [])``. Both datasets under one folder is an error."""
    root = Path(root)
    eeg = things_eeg2.find_preprocessed(root)
    meg = things_meg.find_things_meg(root)
    if eeg and meg:
        raise DataFormatError(
            f"{root} holds both THINGS-EEG2 files (e.g. {eeg[0].path}) and THINGS-MEG files "
            f"(e.g. {meg[0].path}); pass the folder of the dataset you mean"
        )
    if meg:
        return MEG, meg
    if eeg:
        return EEG2, eeg
    return None, []


def _large_unavailable(root: Any, what: str) -> DataFormatError:
    return DataFormatError(
        f"test_set 'large' (the 2,400 exp images of THINGS-MEG's 200 test concepts) exists only "
        f"in the official THINGS-MEG derivative (preprocessed_P{{n}}-epo.fif + "
        f"sample_attributes_P{{n}}.csv); {root} holds {what}. Use test_set 'small'"
    )


def read_recording(
    root: str | os.PathLike,
    subject: int,
    partition: str,
    images: ImageSet | None = None,
    *,
    test_set: str = "small",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Recording:
    """One subject's ``train`` or ``test`` partition from whatever dataset ``root`` holds.

    ``test_set`` ('small' or 'large') picks THINGS-MEG's test set; 'large' exists only in the
    official THINGS-MEG derivative and is an error elsewhere (for either partition, so a run
    configured for it fails before training).
    """
    root = Path(root)
    if recognise(root, test_set) == MEG:
        return things_meg.read_things_meg(root, subject, partition, images, test_set=test_set,
                                          cache_dir=cache_dir, progress=progress)
    return things_eeg2.read_things_eeg2(root, subject, partition, images, cache_dir=cache_dir,
                                        progress=progress)


def recognise(root: str | os.PathLike, test_set: str = "small") -> str:
    """The dataset under ``root`` (``'THINGS-EEG2'`` or ``'THINGS-MEG'``) for a read with
    ``test_set``: none found, or THINGS-EEG2 asked for the large test set, is an error."""
    _check_test_set(test_set)
    dataset, _ = find_dataset(root)
    if dataset == EEG2 and test_set != "small":
        raise _large_unavailable(root, "THINGS-EEG2, which has one test set")
    if dataset is None:
        raise MissingFileError(
            f"{root}: no preprocessed THINGS-EEG2 or THINGS-MEG data found. Layouts read: "
            + "; ".join([*things_eeg2.LAYOUTS.values(), *things_meg.LAYOUTS.values()])
        )
    return dataset


def read_images(
    data_root: str | os.PathLike | None,
    images_path: str | os.PathLike | None,
    *,
    test_set: str = "small",
    subject: int | None = None,
) -> ImageSet:
    """The image set for the data under ``data_root``, in the recordings' image order.

    For the official THINGS-MEG derivative it is built from the subject's trial table (the
    first subject's when ``subject`` is None) with files under ``images_path``; otherwise it is
    the THINGS image folder ``images_path`` (:func:`read_image_set`).
    """
    _check_test_set(test_set)
    dataset, files = (None, []) if data_root is None or not Path(data_root).exists() else find_dataset(data_root)
    official = dataset == MEG and any(f.layout == "official" for f in files)
    if test_set != "small" and not official:
        what = {EEG2: "THINGS-EEG2, which has one test set", MEG: "only ATM's THINGS-MEG pickles"}
        raise _large_unavailable(data_root, what.get(dataset, "no THINGS-MEG official derivative"))
    if images_path is None:
        raise MissingFileError("no image folder given (data.images / --images)")
    if official:
        return things_meg.things_meg_image_set(data_root, subject, images_path, test_set)
    return read_image_set(images_path)
