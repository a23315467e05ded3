"""One entry point for every dataset: a table of readers, as MNE's ``read_raw`` is.

Each dataset is one :class:`Dataset` subclass, in its own reader module, that says which files
it recognises (:meth:`Dataset.find`, from names and headers only), reads one subject's partition
(:meth:`Dataset.read`), gives the image set in the recordings' image order
(:meth:`Dataset.images`) and describes what it found for ``mindsight info``
(:meth:`Dataset.describe`). The dispatchers here find which dataset a folder (or file) holds and
hand the call to it: :func:`read_recording`, :func:`read_images`, :func:`dataset_for`,
:func:`find_dataset`.

**Adding a dataset** is one new file and one line: write ``mindsight/io/<name>.py`` holding a
``Dataset`` subclass, and add ``"<name>": "mindsight.io.<name>:<Class>"`` to :data:`_READERS`
below. The table is read on first use (so a reader's heavy imports never slow ``import
mindsight``) and every class is checked when it is registered (:mod:`mindsight.registry`): a
reader missing ``find`` or ``layouts`` fails there, not halfway through a run.

Test sets: each dataset lists its own (:attr:`Dataset.test_sets`, the first is its default).
``'small'``, the run configuration's default, means a dataset's default test set when the
dataset has none of that name (EEG-ImageNet: ``'zero-shot'``); :data:`TEST_SETS` is every name
some registered dataset knows.
"""

from __future__ import annotations

import abc
import os
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.images import ImageSet, read_image_set
from mindsight.recording import Recording
from mindsight.registry import Contract, Registry, from_table

# The registry of readers: dataset name → "module:Class". One line per dataset.
_READERS: dict[str, str] = {
    "THINGS-EEG2": "mindsight.io.things_eeg2:ThingsEEG2",
    "THINGS-MEG": "mindsight.io.things_meg:ThingsMEG",
    "EEG-ImageNet": "mindsight.io.eeg_imagenet:EEGImageNet",
}

DEFAULT_TEST_SET = "small"  # data.test_set's default: each dataset's own default test set
NO_IMAGES = "no image folder given (data.images / --images)"  # Dataset.images without a folder
_SKIP_DIRS = {"training_images", "test_images", "__pycache__", ".git"}
_MAX_DEPTH = 5


@dataclass
class Finding:
    """One recognised dataset (or part of one) and a table describing it (``mindsight info``)."""

    kind: str  # 'preprocessed', 'raw', 'images', 'features'
    layout: str
    description: str
    root: Path
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def subjects(self) -> list[int]:
        return sorted({r["subject"] for r in self.rows if "subject" in r})

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "layout": self.layout, "description": self.description,
                "root": str(self.root), "subjects": self.subjects, "rows": self.rows}


class Dataset(Contract, abc.ABC):
    """A dataset's reader: one subclass per dataset, registered in :data:`_READERS`.

    Class attributes: ``name`` (the registry key), ``description`` (one line), ``layouts``
    (layout → one-line description, listed when nothing is found), ``test_sets`` (the first
    is the default). Instances hold no state; every method takes the data's ``root`` (a folder,
    or a file where the dataset is one file).
    """

    declares = ("name", "description", "layouts")
    name: ClassVar[str]
    description: ClassVar[str]
    layouts: ClassVar[dict[str, str]]
    test_sets: ClassVar[tuple[str, ...]] = (DEFAULT_TEST_SET,)

    @abstractmethod
    def find(self, root: Path, subject: int | None = None) -> list[Any]:
        """The files of this dataset under ``root`` (or ``root`` itself, a file), ``[]`` if none.
        Names and headers only: this runs on every folder a user passes."""

    def subjects(self, root: Path) -> list[int]:
        """The subjects whose data are under ``root``, sorted."""
        return sorted({f.subject for f in self.find(Path(root))})

    @abstractmethod
    def read(self, root: Path, subject: int, partition: str, images: ImageSet | None = None, *,
             test_set: str = DEFAULT_TEST_SET, cache_dir: str | os.PathLike | None = None) -> Recording:
        """One subject's ``train`` or ``test`` partition; ``Trials.image`` indexes the images of
        :meth:`images`' partition."""

    @abstractmethod
    def images(self, data_root: Path, images_path: Path | None, *,
               test_set: str = DEFAULT_TEST_SET, subject: int | None = None) -> ImageSet:
        """The image set whose partitions list the images in the recordings' image order;
        ``images_path`` None is a :class:`MissingFileError` (:data:`NO_IMAGES`)."""

    @abstractmethod
    def describe(self, root: Path) -> list[Finding]:
        """What ``mindsight info`` shows of the files under ``root`` (``[]`` if none)."""

    def header(self, root: Path, subject: int, partition: str, images: ImageSet | None = None, *,
               test_set: str = DEFAULT_TEST_SET, cache_dir: str | os.PathLike | None = None) -> Recording:
        """The partition as a zero-trial recording with its real channels, rate and times
        (:func:`mindsight.io.read_header`). This default reads the partition; readers that can
        tell from file headers alone override it."""
        from mindsight.io.headers import empty_recording

        rec = self.read(Path(root), subject, partition, images, test_set=test_set, cache_dir=cache_dir)
        return empty_recording(list(rec.ch_names), rec.sfreq, rec.times, subject, partition,
                               rec.concept_names, rec.description)

    def resolve_test_set(self, test_set: str, root: Any = None) -> str:
        """``test_set`` as this dataset names it: one of :attr:`test_sets`, or ``'small'`` (the
        configuration's default) for the dataset's default; anything else is an error."""
        if test_set in self.test_sets:
            return test_set
        if test_set == DEFAULT_TEST_SET:
            return self.test_sets[0]
        where = f"{root}: " if root is not None else ""
        raise DataFormatError(
            f"{where}test_set {test_set!r} is not one of {self.name}'s test sets "
            f"({', '.join(self.test_sets)}); set data.test_set to one of them")


DATASETS: Registry[Dataset] = Registry("dataset", base=Dataset, load=from_table(_READERS))


def __getattr__(name: str) -> Any:
    if name == "TEST_SETS":  # computed on first use: the readers are imported then
        return _all_test_sets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _all_test_sets() -> tuple[str, ...]:
    """``TEST_SETS``: every test-set name some registered dataset knows, in registry order."""
    return tuple(dict.fromkeys(t for e in DATASETS for t in e.factory.test_sets))


def readers() -> list[Dataset]:
    """An instance of every registered dataset's reader, in registry order."""
    return [e.factory() for e in DATASETS]


# -- helpers the readers share ---------------------------------------------------------------------
def walk_files(root: Path) -> list[Path]:
    """Files under ``root`` (or ``root`` itself), skipping image folders, to a bounded depth."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such file or directory")
    found = []
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).parts) - base_depth
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and depth < _MAX_DEPTH)
        found += [Path(dirpath) / f for f in sorted(filenames)]
    return found


def occurrence_rank(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements share its key (0, 1, 2, ...): the
    repetition number of each trial when ``keys`` are the trials' images."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys)) - first
    return rank


# -- dispatch ------------------------------------------------------------------------------------
def check_test_set(test_set: str) -> None:
    """``test_set`` must be a test set of some registered dataset."""
    known = _all_test_sets()
    if test_set not in known:
        raise DataFormatError(f"test_set must be one of {known}, got {test_set!r}")


def find_dataset(root: str | os.PathLike) -> tuple[str | None, list[Any]]:
    """``(dataset name, its files)`` found under ``root``, or ``(None, [])``. Files of two
    datasets under one root are an error naming both."""
    root = Path(root)
    found = [(ds.name, files) for ds in readers() if (files := ds.find(root))]
    if len(found) > 1:
        example = [f"{name} files (e.g. {getattr(files[0], 'path', files[0])})" for name, files in found]
        both = " and ".join(example) if len(example) == 2 else ", ".join(example)
        raise DataFormatError(
            f"{root} holds {'both ' if len(example) == 2 else ''}{both}; pass the folder of the "
            "dataset you mean"
        )
    return found[0] if found else (None, [])


def dataset_for(root: str | os.PathLike, test_set: str | None = None) -> Dataset:
    """The reader of the dataset under ``root``. Nothing found is a :class:`MissingFileError`
    listing every layout mindsight reads; a ``test_set`` the dataset lacks is a
    :class:`DataFormatError`."""
    if test_set is not None:
        check_test_set(test_set)
    name, _ = find_dataset(root)
    if name is None:
        known = readers()
        raise MissingFileError(
            f"{root}: no preprocessed {' or '.join(ds.name for ds in known)} data found. "
            "Layouts read: " + "; ".join(d for ds in known for d in ds.layouts.values())
        )
    dataset = DATASETS.get(name)()
    if test_set is not None:
        dataset.resolve_test_set(test_set, root)
    return dataset


def read_recording(
    root: str | os.PathLike,
    subject: int,
    partition: str,
    images: ImageSet | None = None,
    *,
    test_set: str = DEFAULT_TEST_SET,
    cache_dir: str | os.PathLike | None = None,
) -> Recording:
    """One subject's ``train`` or ``test`` partition from whatever dataset ``root`` holds.

    ``test_set`` picks the dataset's test set (THINGS-MEG: 'small' or 'large'; EEG-ImageNet:
    'zero-shot' or 'per-image'; 'small' is every dataset's default). A test set the dataset
    lacks is an error for either partition, so a run configured for it fails before training.
    """
    root = Path(root)
    dataset = dataset_for(root, test_set)
    return dataset.read(root, subject, partition, images, test_set=dataset.resolve_test_set(test_set),
                        cache_dir=cache_dir)


def read_images(
    data_root: str | os.PathLike | None,
    images_path: str | os.PathLike | None,
    *,
    test_set: str = DEFAULT_TEST_SET,
    subject: int | None = None,
) -> ImageSet:
    """The image set for the data under ``data_root``, in the recordings' image order.

    The dataset under ``data_root`` builds it (:meth:`Dataset.images`: the THINGS-MEG official
    derivative from the subject's trial table, EEG-ImageNet from its file and an ImageNet
    folder). Without ``data_root``, or where it holds no dataset, it is the THINGS image folder
    ``images_path`` (:func:`read_image_set`).
    """
    check_test_set(test_set)
    exists = data_root is not None and Path(data_root).exists()
    name = find_dataset(data_root)[0] if exists else None
    if name is None:
        if test_set != DEFAULT_TEST_SET:
            from mindsight.io.things_meg import large_unavailable

            if test_set == "large":
                raise large_unavailable(data_root, "no THINGS-MEG official derivative")
            raise DataFormatError(
                f"test_set {test_set!r} needs the recordings (data.eeg) to define it, and "
                f"{data_root} holds no dataset mindsight reads")
        if images_path is None:
            raise MissingFileError(NO_IMAGES)
        return read_image_set(images_path)
    dataset = DATASETS.get(name)()
    test_set = dataset.resolve_test_set(test_set, data_root)
    return dataset.images(Path(data_root), None if images_path is None else Path(images_path),
                          test_set=test_set, subject=subject)
