"""The THINGS-EEG2 image set: ``training_images/``, ``test_images/`` and ``image_metadata.npy``.

EEG image condition i (0-based) of a partition is the i-th image of that partition in the order
of ``image_metadata.npy`` (which is the sorted order of the folders and files). Concept names are
parsed from the folder names: ``00002_aircraft_carrier`` → ``aircraft carrier``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.containers import read_dict

PARTITION_DIRS = {"train": "training_images", "test": "test_images"}
METADATA_FILE = "image_metadata.npy"
METADATA_KEYS = {
    "train": ("train_img_files", "train_img_concepts"),
    "test": ("test_img_files", "test_img_concepts"),
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_FOLDER = re.compile(r"^(\d+)_(.+)$")


def concept_name(folder: str) -> str:
    """``'00002_aircraft_carrier'`` → ``'aircraft carrier'`` (an unnumbered folder keeps its name)."""
    m = _FOLDER.match(folder)
    return (m.group(2) if m else folder).replace("_", " ")


@dataclass(frozen=True, eq=False)
class ImagePartition:
    """The images of one partition, in EEG condition order."""

    name: str
    root: Path
    files: tuple[str, ...]  # relative to root, e.g. 'training_images/00001_aardvark/aardvark_01b.jpg'
    concept: np.ndarray  # per image: index into concept_names
    concept_folders: tuple[str, ...]  # per concept: its folder, or its identifier (an ImageNet wnid)
    names: tuple[str, ...] | None = None  # readable concept names where the folders are not ones

    @cached_property
    def concept_names(self) -> tuple[str, ...]:
        if self.names is not None:
            return tuple(self.names)
        return tuple(concept_name(f) for f in self.concept_folders)

    @property
    def paths(self) -> list[Path]:
        return [self.root / f for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    @property
    def n_concepts(self) -> int:
        return len(self.concept_folders)

    def fingerprint(self) -> str:
        """Hash of the image list (relative paths and file sizes): keys the feature cache."""
        h = hashlib.sha256()
        for rel in self.files:
            try:
                size = (self.root / rel).stat().st_size
            except FileNotFoundError:
                size = -1
            h.update(f"{rel}\t{size}\n".encode())
        return h.hexdigest()


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Both partitions of an image set; ``image_set['train']`` / ``image_set['test']``."""

    root: Path
    train: ImagePartition
    test: ImagePartition
    source: str  # 'image_metadata.npy', 'folders', or the file the dataset's reader built it from
    note: str | None = None  # what a user should know about this split (e.g. why it is not zero-shot)

    def __getitem__(self, partition: str) -> ImagePartition:
        if partition not in PARTITION_DIRS:
            raise DataFormatError(f"partition must be 'train' or 'test', got {partition!r}")
        return self.train if partition == "train" else self.test

    def overlapping_concepts(self) -> list[str]:
        return sorted(set(self.train.concept_names) & set(self.test.concept_names))


def find_image_root(path: str | os.PathLike) -> Path:
    """The directory holding ``training_images``/``test_images`` at or just below ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise MissingFileError(f"{path}: image set directory not found")
    candidates = [path, *(p for p in sorted(path.iterdir()) if p.is_dir())]
    for cand in candidates:
        if (cand / METADATA_FILE).is_file() or all(
            (cand / d).is_dir() for d in PARTITION_DIRS.values()
        ):
            return cand
    raise MissingFileError(
        f"{path}: no THINGS image set here: expected {METADATA_FILE} or the folders "
        f"{' and '.join(PARTITION_DIRS.values())}"
    )


def read_image_set(path: str | os.PathLike, check_files: bool = True) -> ImageSet:
    """Read an image set from ``image_metadata.npy`` or, without it, from the folders."""
    root = find_image_root(path)
    meta_path = root / METADATA_FILE
    if meta_path.is_file():
        meta = read_dict(meta_path, required=METADATA_KEYS["train"] + METADATA_KEYS["test"])
        parts = {p: _partition_from_metadata(root, p, meta, meta_path) for p in PARTITION_DIRS}
        source = METADATA_FILE
    else:
        parts = {p: _partition_from_folders(root, p) for p in PARTITION_DIRS}
        source = "folders"
    if check_files:
        for part in parts.values():
            missing = [f for f in part.files if not (root / f).is_file()]
            if missing:
                raise MissingFileError(
                    f"{root}: {len(missing)} image(s) listed in {source} are missing, "
                    f"e.g. {root / missing[0]}"
                )
    return ImageSet(root=root, train=parts["train"], test=parts["test"], source=source)


def _partition_from_metadata(root: Path, part: str, meta: dict, meta_path: Path) -> ImagePartition:
    files_key, concepts_key = METADATA_KEYS[part]
    files = [str(f) for f in np.asarray(meta[files_key]).ravel()]
    concepts = [str(c) for c in np.asarray(meta[concepts_key]).ravel()]
    if len(files) != len(concepts):
        raise DataFormatError(
            f"{meta_path}: {files_key!r} has {len(files)} entries but {concepts_key!r} has "
            f"{len(concepts)}"
        )
    if not files:
        raise DataFormatError(f"{meta_path}: {files_key!r} is empty")
    folders = list(dict.fromkeys(concepts))  # first-appearance order = sorted order in THINGS
    index = {f: i for i, f in enumerate(folders)}
    rel = [f"{PARTITION_DIRS[part]}/{c}/{f}" for c, f in zip(concepts, files, strict=True)]
    return ImagePartition(
        name=part,
        root=root,
        files=tuple(rel),
        concept=np.array([index[c] for c in concepts], dtype=np.int64),
        concept_folders=tuple(folders),
    )


def _partition_from_folders(root: Path, part: str) -> ImagePartition:
    base = root / PARTITION_DIRS[part]
    if not base.is_dir():
        raise MissingFileError(f"{base}: folder not found (and no {METADATA_FILE} in {root})")
    folders = sorted(p.name for p in base.iterdir() if p.is_dir())
    files: list[str] = []
    concept: list[int] = []
    for i, folder in enumerate(folders):
        names = sorted(
            p.name for p in (base / folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not names:
            raise DataFormatError(f"{base / folder}: concept folder holds no images")
        files += [f"{PARTITION_DIRS[part]}/{folder}/{n}" for n in names]
        concept += [i] * len(names)
    if not files:
        raise DataFormatError(f"{base}: no concept folders with images")
    return ImagePartition(
        name=part,
        root=root,
        files=tuple(files),
        concept=np.array(concept, dtype=np.int64),
        concept_folders=tuple(folders),
    )
