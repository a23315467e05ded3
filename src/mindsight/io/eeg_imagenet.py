"""Reader for EEG-ImageNet (Zhu et al. 2024): 16 subjects, 80 ImageNet classes, 62-channel EEG.

The release is one ``torch.save`` file, ``EEG-ImageNet.pth``, or its two halves
``EEG-ImageNet_1.pth`` / ``EEG-ImageNet_2.pth`` (8 subjects each; either alone is read, both are
concatenated), holding::

    {'dataset': [{'eeg_data': Tensor(62, 500), 'label': 'n02106662', 'granularity': 'coarse',
                  'subject': 0, 'image': 'n02106662_1234.JPEG'}, ...],
     'labels': [80 wnids], 'images': [...]}

What the authors' repository (github.com/Promise-Z5Q2SQ/EEG-ImageNet-Dataset) says about it:

- 62 EEG channels at 1000 Hz; each trial is the 0.5 s the image was on screen, from its onset
  (README: "T is ... the duration of the image stimulus presentation, i.e., 0.5 seconds"), so
  sample i is at i / 1000 s. Their loaders keep samples 40:440 (``src/dataset.py``); here all 500
  are kept and that crop is ``data.tmin``/``data.tmax`` in ``configs/eeg-imagenet.yaml``.
- The channel order is the cap's (``data/mode/montage_ch_names.json``) without the mastoids
  M1/M2 and the non-EEG channels (HEO, VEO, EKG, EMG, Trigger): the 62-name list of
  ``src/model/rgnn.py``. mindsight spells them as 10-05 names (``FP1`` → ``Fp1``, ``FZ`` → ``Fz``);
  CB1/CB2 are the Neuroscan cap's cerebellar electrodes, which have no 10-05 name.
- Subjects are numbered 0-15 (``--subject``, "subject from 0 to 15"); mindsight numbers them from
  1, so the file's subject 0 is subject 1.
- Images: ``imageNet_images/<wnid>/<image>`` (``src/dataset.py``: the folder is the image name up
  to its first ``_``), i.e. the ILSVRC training layout. The release ships no images: point
  ``data.images`` at an ImageNet folder (``IMAGENET_DIR/<wnid>/<wnid>_<n>.JPEG``, or the same
  files flat in ``IMAGENET_DIR``).
- Their classification split (``src/object_classification.py``): within each subject's trial
  list, ``i % 50 < 30`` is training and the rest test: the first 30 of each class's 50 images.
- The EEG is stored as recorded, in microvolts: mindsight keeps the unit
  (``Recording.description['unit']``) and scales inputs per channel when training
  (:mod:`mindsight.train.scaler`).

Test sets (:attr:`EEGImageNet.test_sets`):

``zero-shot`` (the default; what ``'small'`` means here)
    whole classes held out: within each granularity, in sorted wnid order, every 5th class
    (the 5th, 10th, ...: 8 coarse + 8 fine of the 80) is a test class; the other 64 train. No
    test class is seen in training, as mindsight's zero-shot retrieval needs.
``per-image``
    the authors' split: in each class, the first 60 % of the subject's images in its trial order
    (30 of 50) train and the rest test. Training and test share every class, so mindsight's
    zero-shot checks refuse it for training; it is there to compare with the paper's numbers.

Reading converts the subject's trials once to the float32 cache (:mod:`mindsight.io.cache`) and
keeps the file's trial table as a cached index, so later reads (and ``mindsight info``) never
load the ``.pth`` again. The file is read by :func:`mindsight.io.tensors.read_torch`, which
refuses anything but tensors, numbers, strings and containers.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindsight._atomic import atomic_path
from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.cache import cached_json, load_float32_rows
from mindsight.io.datasets import (
    DEFAULT_TEST_SET,
    NO_IMAGES,
    Dataset,
    Finding,
    occurrence_rank,
    walk_files,
)
from mindsight.io.images import ImagePartition, ImageSet
from mindsight.io.tensors import read_torch
from mindsight.output import progress_callback
from mindsight.recording import Recording, Trials

DATASET = "EEG-ImageNet"
SFREQ = 1000.0
UNIT = "µV"
# the 62 channels in the file's order (src/model/rgnn.py `channels` of the authors' repository),
# spelled as 10-05 names
CH_NAMES_62 = (
    "Fp1 Fpz Fp2 AF3 AF4 F7 F5 F3 F1 Fz F2 F4 F6 F8 FT7 FC5 FC3 FC1 FCz FC2 FC4 FC6 FT8 T7 C5 C3 C1 "
    "Cz C2 C4 C6 T8 TP7 CP5 CP3 CP1 CPz CP2 CP4 CP6 TP8 P7 P5 P3 P1 Pz P2 P4 P6 P8 PO7 PO5 PO3 POz "
    "PO4 PO6 PO8 CB1 O1 Oz O2 CB2"
).split()
GRANULARITIES = ("coarse", "fine")
ENTRY_KEYS = ("eeg_data", "label", "granularity", "subject", "image")
TEST_SETS = ("zero-shot", "per-image")
ZERO_SHOT_EVERY = 5  # every 5th class of each granularity (sorted wnids) is a test class
PER_IMAGE_TRAIN = 0.6  # the authors' split: the first 30 of each class's 50 images train
LAYOUTS = {
    "eeg-imagenet": "EEG-ImageNet release (EEG-ImageNet.pth, or its halves EEG-ImageNet_1.pth / "
                    "_2.pth: torch.save of {'dataset': [...], 'labels', 'images'})",
}
IMAGE_LAYOUTS = ("IMAGENET_DIR/<wnid>/<wnid>_<n>.JPEG (the ILSVRC training layout) or "
                 "IMAGENET_DIR/<wnid>_<n>.JPEG (flat)")
# files mapping wnids to names that ImageNet copies ship (Kaggle's ILSVRC, the authors' images
# folder, ImageNet's words.txt); looked for in the image folder and the folders above it
SYNSET_FILES = ("LOC_synset_mapping.txt", "synset_map_en.txt", "words.txt")
PER_IMAGE_NOTE = (
    "test_set 'per-image' is EEG-ImageNet's per-image split (the authors' first 30 of each "
    "class's 50 images train, the rest test): training and test share every class, so it cannot "
    "train or evaluate zero-shot retrieval; use test_set 'zero-shot'")

_FILE = re.compile(r"^EEG-ImageNet(?:_(\d+))?\.pth$", re.IGNORECASE)
_INDEX_VERSION = 1


@dataclass(frozen=True)
class ReleaseFile:
    """An ``EEG-ImageNet.pth`` file on disk (``part`` None) or one of its halves (1, 2, ...)."""

    path: Path
    part: int | None


def find_eeg_imagenet(root: str | os.PathLike) -> list[ReleaseFile]:
    """The EEG-ImageNet release files at ``root`` (the file itself) or under it, by name."""
    out = []
    for p in walk_files(Path(root)):
        if m := _FILE.match(p.name):
            out.append(ReleaseFile(p, None if m.group(1) is None else int(m.group(1))))
    return out


def release_files(root: str | os.PathLike) -> list[ReleaseFile]:
    """The files of the one release under ``root``, halves in order; none, two releases, or a
    whole file beside its halves is an error."""
    root = Path(root)
    found = find_eeg_imagenet(root)
    if not found:
        raise MissingFileError(
            f"{root}: no EEG-ImageNet.pth (or EEG-ImageNet_1.pth / _2.pth) found; "
            "pass the file or the folder holding it")
    folders = sorted({f.path.parent for f in found})
    if len(folders) > 1:
        raise DataFormatError(
            f"{root}: EEG-ImageNet files in several folders ({', '.join(map(str, folders))}); "
            "pass the file or folder you mean")
    whole = [f for f in found if f.part is None]
    if whole and len(found) > 1:
        raise DataFormatError(
            f"{folders[0]}: holds both {whole[0].path.name} and its halves "
            f"({', '.join(f.path.name for f in found if f.part is not None)}); pass the file you mean")
    return sorted(found, key=lambda f: f.part or 0)


# -- the trial table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Index:
    """The release's trial table (no EEG values): one row per trial, in file order."""

    files: tuple[Path, ...]
    shape: tuple[int, int]  # (channels, samples) of every trial
    dtype: str
    file: np.ndarray  # per trial: index into files
    entry: np.ndarray  # per trial: position in that file's 'dataset' list
    subject: np.ndarray  # per trial, 1-based
    label: np.ndarray  # per trial: index into labels
    image: np.ndarray  # per trial: index into images
    labels: tuple[str, ...]  # wnids, sorted
    granularity: tuple[str, ...]  # per label
    images: tuple[str, ...]  # image file names, sorted

    @property
    def source(self) -> str:
        return str(self.files[0]) if len(self.files) == 1 else f"{self.files[0].parent}/EEG-ImageNet_*.pth"

    @property
    def subjects(self) -> list[int]:
        return sorted({int(s) for s in self.subject})

    def times(self) -> np.ndarray:
        return np.arange(self.shape[1]) / SFREQ


def _where(path: Path, i: int, key: str | None = None) -> str:
    return f"{path}: dataset[{i}]" + (f"[{key!r}]" if key else "")


def _scan(path: Path) -> dict[str, Any]:
    """The trial table of one release file, checked: every trial a dict with ``ENTRY_KEYS``,
    EEG a 2-D tensor of the release's 62 channels, one shape for all."""
    import torch

    content = read_torch(path)
    if not isinstance(content, dict) or "dataset" not in content:
        keys = ", ".join(map(repr, content)) if isinstance(content, dict) else type(content).__name__
        raise DataFormatError(
            f"{path}: no 'dataset' key (found {keys or 'no keys'}); an EEG-ImageNet file is a dict "
            "{'dataset': [{'eeg_data', 'label', 'granularity', 'subject', 'image'}, ...], 'labels', 'images'}")
    trials = content["dataset"]
    if not isinstance(trials, (list, tuple)) or not trials:
        raise DataFormatError(f"{path}: 'dataset' should be a non-empty list of trials, found "
                              f"{type(trials).__name__}{'' if trials else ' (empty)'}")
    shape, dtype = None, None
    rows: dict[str, list[Any]] = {"subject": [], "label": [], "granularity": [], "image": []}
    for i, t in enumerate(trials):
        if not isinstance(t, dict):
            raise DataFormatError(f"{_where(path, i)} is a {type(t).__name__}, not a dict of {ENTRY_KEYS}")
        missing = [k for k in ENTRY_KEYS if k not in t]
        if missing:
            raise DataFormatError(f"{_where(path, i)} has no {', '.join(map(repr, missing))} "
                                  f"(it has {', '.join(map(repr, t))})")
        x = t["eeg_data"]
        if not isinstance(x, (torch.Tensor, np.ndarray)) or x.ndim != 2 or x.shape[0] != len(CH_NAMES_62):
            what = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise DataFormatError(f"{_where(path, i, 'eeg_data')} is {what}; EEG-ImageNet trials are "
                                  f"({len(CH_NAMES_62)} channels, samples) tensors")
        if shape is None:
            shape, dtype = tuple(x.shape), str(x.dtype).replace("torch.", "")
        elif tuple(x.shape) != shape:
            raise DataFormatError(f"{_where(path, i, 'eeg_data')} has shape {tuple(x.shape)} but "
                                  f"dataset[0] {shape}; every trial must have the same samples")
        if str(t["granularity"]) not in GRANULARITIES:
            raise DataFormatError(f"{_where(path, i, 'granularity')} is {t['granularity']!r}; "
                                  f"expected one of {GRANULARITIES}")
        try:
            subject = int(t["subject"])
        except (TypeError, ValueError):
            subject = -1
        if subject < 0 or subject != t["subject"]:
            raise DataFormatError(f"{_where(path, i, 'subject')} is {t['subject']!r}; expected the "
                                  "0-based subject number (0-15)")
        rows["subject"].append(subject + 1)
        rows["label"].append(str(t["label"]))
        rows["granularity"].append(str(t["granularity"]))
        rows["image"].append(str(t["image"]))
    return {"shape": list(shape), "dtype": dtype, **rows}


def _build_index(files: list[ReleaseFile]) -> dict[str, Any]:
    scans = [_scan(f.path) for f in files]
    if len({tuple(s["shape"]) for s in scans}) > 1:
        raise DataFormatError(f"{files[0].path.parent}: the halves hold trials of different shapes "
                              f"({', '.join(str(s['shape']) for s in scans)})")
    owner: dict[int, Path] = {}
    for f, s in zip(files, scans, strict=True):
        for subject in sorted(set(s["subject"])):
            if subject in owner:
                raise DataFormatError(f"subject {subject} (file subject {subject - 1}) is in both "
                                      f"{owner[subject]} and {f.path}; pass one of them")
            owner[subject] = f.path
    cat = {k: [v for s in scans for v in s[k]] for k in ("subject", "label", "granularity", "image")}
    kind: dict[str, str] = {}
    for i, (label, g) in enumerate(zip(cat["label"], cat["granularity"], strict=True)):
        if kind.setdefault(label, g) != g:
            raise DataFormatError(f"{files[0].path}: class {label} is both {kind[label]!r} and {g!r} "
                                  f"(trial {i}); each class has one granularity")
    labels, images = sorted(kind), sorted(set(cat["image"]))
    label_of, image_of = {w: i for i, w in enumerate(labels)}, {n: i for i, n in enumerate(images)}
    return {
        "version": _INDEX_VERSION, "shape": scans[0]["shape"], "dtype": scans[0]["dtype"],
        "file": [i for i, s in enumerate(scans) for _ in s["subject"]],
        "entry": [j for s in scans for j in range(len(s["subject"]))],
        "subject": cat["subject"], "label": [label_of[w] for w in cat["label"]],
        "image": [image_of[n] for n in cat["image"]],
        "labels": labels, "granularity": [kind[w] for w in labels], "images": images,
    }


def read_index(root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Index:
    """The trial table of the release under ``root``, built once (reading the file) and cached."""
    files = release_files(root)
    raw = cached_json([f.path for f in files], f"eeg-imagenet-index-v{_INDEX_VERSION}",
                      lambda: _build_index(files), cache_dir)
    return Index(
        files=tuple(f.path for f in files), shape=tuple(raw["shape"]), dtype=raw["dtype"],
        **{k: np.asarray(raw[k], dtype=np.int64) for k in ("file", "entry", "subject", "label", "image")},
        labels=tuple(raw["labels"]), granularity=tuple(raw["granularity"]), images=tuple(raw["images"]),
    )


# -- the test sets -----------------------------------------------------------------------------------
def zero_shot_test_classes(labels: Sequence[str], granularity: Sequence[str]) -> list[str]:
    """Every :data:`ZERO_SHOT_EVERY`-th class (5th, 10th, ...) of each granularity, in sorted
    wnid order: the held-out classes of test set ``zero-shot``."""
    out = []
    for g in GRANULARITIES:
        ranked = sorted(w for w, k in zip(labels, granularity, strict=True) if k == g)
        out += [w for i, w in enumerate(ranked) if i % ZERO_SHOT_EVERY == ZERO_SHOT_EVERY - 1]
    return sorted(out)


@dataclass(frozen=True)
class Split:
    """One partition of a test set: its images (sorted by class, then name) and their classes."""

    images: np.ndarray  # indices into Index.images
    classes: np.ndarray  # sorted indices into Index.labels
    image_class: np.ndarray  # per image: index into classes


def split(index: Index, test_set: str, subject: int | None = None) -> dict[str, Split]:
    """The ``train`` and ``test`` partitions of ``test_set`` (see the module docstring);
    ``per-image`` follows ``subject``'s trial order (the first subject's when None)."""
    image_label = np.full(len(index.images), -1, dtype=np.int64)
    image_label[index.image] = index.label
    if test_set == "zero-shot":
        held = np.isin(np.asarray(index.labels), zero_shot_test_classes(index.labels, index.granularity))
        if held.all() or not held.any():
            raise DataFormatError(
                f"{index.source}: {len(index.labels)} classes leave no "
                f"{'training' if held.all() else 'test'} class for the zero-shot split (every "
                f"{ZERO_SHOT_EVERY}th class of each granularity is a test class)")
        in_test = held[image_label]
        shown = np.ones(len(index.images), dtype=bool)
    elif test_set == "per-image":
        s = index.subjects[0] if subject is None else subject
        rows = np.flatnonzero(index.subject == s)
        if rows.size == 0:
            raise MissingFileError(_no_subject(index, s))
        seen = index.image[rows][np.sort(np.unique(index.image[rows], return_index=True)[1])]  # file order
        in_test = np.zeros(len(index.images), dtype=bool)
        shown = np.zeros(len(index.images), dtype=bool)
        shown[seen] = True
        for c in np.unique(image_label[seen]):
            ordered = seen[image_label[seen] == c]
            in_test[ordered[int(round(PER_IMAGE_TRAIN * len(ordered))):]] = True
    else:
        raise DataFormatError(f"test_set must be one of {TEST_SETS}, got {test_set!r}")
    out = {}
    for part, mask in (("train", ~in_test), ("test", in_test)):
        imgs = np.flatnonzero(mask & shown & (image_label >= 0))
        imgs = imgs[np.lexsort((imgs, image_label[imgs]))]  # by class, then name (names are sorted)
        classes, image_class = np.unique(image_label[imgs], return_inverse=True)
        out[part] = Split(imgs, classes, image_class.astype(np.int64))
    return out


def _no_subject(index: Index, subject: int) -> str:
    return (f"{index.source}: no trials of subject {subject} (file subject {subject - 1}); subjects "
            f"found: {', '.join(map(str, index.subjects))}")


# -- images ----------------------------------------------------------------------------------------
def synset_names(images_root: Path) -> dict[str, str]:
    """wnid → readable name from a synset table beside the images (:data:`SYNSET_FILES`, in the
    image folder or up to three folders above it): the first name of each line's list
    (``n01440764 tench, Tinca tinca`` → ``tench``). Empty when there is none."""
    for folder in [images_root, *list(images_root.parents)[:3]]:
        for name in SYNSET_FILES:
            path = folder / name
            if path.is_file():
                out = {}
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    parts = line.strip().split(None, 1)
                    if len(parts) == 2 and re.match(r"^n\d+$", parts[0]):
                        out[parts[0]] = parts[1].split(",")[0].strip().replace("_", " ")
                return out
    return {}


def _image_root(images_root: Path, name: str) -> tuple[Path, bool]:
    """(folder, whether images sit in wnid folders) where image ``name`` is found."""
    if not images_root.is_dir():
        raise MissingFileError(f"{images_root}: ImageNet image folder not found; expected {IMAGE_LAYOUTS}")
    wnid = name.split("_")[0]
    for cand in [images_root, *sorted(p for p in images_root.iterdir() if p.is_dir())]:
        if (cand / wnid / name).is_file():
            return cand, True
        if (cand / name).is_file():
            return cand, False
    raise MissingFileError(
        f"{images_root}: EEG-ImageNet image {name} not found (looked for {images_root / wnid / name} "
        f"and {images_root / name}); data.images must be an ImageNet folder laid out as {IMAGE_LAYOUTS}")


def eeg_imagenet_image_set(index: Index, images_root: str | os.PathLike, test_set: str,
                           subject: int | None = None, *, check_files: bool = True) -> ImageSet:
    """The images of ``test_set``'s partitions (:func:`split`) under the ImageNet folder
    ``images_root``; concepts are the wnids, named from a synset table when one is found."""
    images_root = Path(images_root)
    parts = split(index, test_set, subject)
    root, nested = _image_root(images_root, index.images[int(parts["train"].images[0])])
    readable = synset_names(images_root)
    out = {}
    for p, sp in parts.items():
        names = [index.images[i] for i in sp.images]
        files = tuple(f"{n.split('_')[0]}/{n}" if nested else n for n in names)
        if check_files:
            missing = [f for f in files if not (root / f).is_file()]
            if missing:
                raise MissingFileError(
                    f"{root}: {len(missing)} of the {len(files)} EEG-ImageNet {p} images are missing, "
                    f"e.g. {root / missing[0]}; data.images must hold every image, laid out as {IMAGE_LAYOUTS}")
        wnids = tuple(index.labels[c] for c in sp.classes)
        out[p] = ImagePartition(name=p, root=root, files=files, concept=sp.image_class, concept_folders=wnids,
                                names=tuple(readable.get(w, w) for w in wnids))
    return ImageSet(root=root, train=out["train"], test=out["test"], source=Path(index.source).name,
                    note=PER_IMAGE_NOTE if test_set == "per-image" else None)


# -- recordings --------------------------------------------------------------------------------------
def _check_image_order(part: ImagePartition, index: Index, sp: Split) -> None:
    names = [Path(f).name for f in part.files]
    expected = [index.images[i] for i in sp.images]
    if names != expected:
        i = next((k for k, (a, b) in enumerate(zip(names, expected, strict=False)) if a != b),
                 min(len(names), len(expected)))
        raise DataFormatError(
            f"{index.source}: the image set at {part.root} does not list this {part.name} partition's "
            f"{len(expected)} images in order (first difference at image {i}: "
            f"{names[i] if i < len(names) else 'none'} vs {expected[i] if i < len(expected) else 'none'}); "
            "build it with read_images from the same file, test set and subject")


def _selection(index: Index, subject: int, partition: str, test_set: str,
               images: ImageSet | None) -> tuple[np.ndarray, Split, tuple[str, ...]]:
    """(the subject's trials of the partition, in file order; the partition; its concept names)."""
    if partition not in ("train", "test"):
        raise DataFormatError(f"partition must be 'train' or 'test', got {partition!r}")
    if subject not in index.subjects:
        raise MissingFileError(_no_subject(index, subject))
    sp = split(index, test_set, subject)[partition]
    rows = np.flatnonzero((index.subject == subject) & np.isin(index.image, sp.images))
    if rows.size == 0:
        raise DataFormatError(f"{index.source}: subject {subject} has no {partition} trials in "
                              f"test set {test_set!r}")
    if images is not None:
        _check_image_order(images[partition], index, sp)
        names = images[partition].concept_names
    else:
        names = tuple(index.labels[c] for c in sp.classes)
    return rows, sp, names


def _description(index: Index, subject: int, partition: str, test_set: str,
                 images: ImageSet | None) -> dict[str, Any]:
    return {"dataset": DATASET, "layout": "eeg-imagenet", "source": index.source, "subject": subject,
            "test_set": test_set, "unit": UNIT,
            "images": str(images.root) if images is not None else None}


def read_eeg_imagenet(root: str | os.PathLike, subject: int, partition: str = "train",
                      images: ImageSet | None = None, *, test_set: str = "zero-shot",
                      cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> Recording:
    """One subject's ``train`` or ``test`` partition of ``test_set`` (subjects from 1).

    ``Trials.image`` indexes the partition of :func:`eeg_imagenet_image_set`; with ``images``
    its order is checked and its concept names used (else the wnids). Data stay in µV, all
    samples from image onset. The first read converts the trials to the float32 cache.
    """
    index = read_index(root, cache_dir)
    rows, sp, concept_names = _selection(index, subject, partition, test_set, images)
    position = np.full(len(index.images), -1, dtype=np.int64)
    position[sp.images] = np.arange(len(sp.images))
    image = position[index.image[rows]]  # index into the partition's images
    concept = sp.image_class[image]
    loaded: dict[int, Any] = {}

    def read_rows(start: int, stop: int) -> np.ndarray:
        out = []
        for r in rows[start:stop]:
            f = int(index.file[r])
            if f not in loaded:
                loaded[f] = read_torch(index.files[f])["dataset"]
            x = loaded[f][int(index.entry[r])]["eeg_data"]
            out.append(x.numpy() if hasattr(x, "numpy") else np.asarray(x))
        return np.stack(out)

    digest = hashlib.sha1(np.ascontiguousarray(rows).tobytes()).hexdigest()[:16]
    bar = progress_callback(f"caching EEG-ImageNet sub-{subject:02d} {partition}", "trial")
    data, _ = load_float32_rows(list(index.files), f"eeg-imagenet-{digest}", (len(rows), *index.shape),
                                read_rows, cache_dir, use_cache=use_cache, on_rows=bar)
    return Recording(
        data=data, ch_names=tuple(CH_NAMES_62), sfreq=SFREQ, times=index.times(),
        trials=Trials.build(image, concept, subject, repetition=occurrence_rank(image)),
        partition=partition, concept_names=concept_names,
        description=_description(index, subject, partition, test_set, images),
    )


def read_eeg_imagenet_header(root: str | os.PathLike, subject: int, partition: str,
                             images: ImageSet | None = None, *, test_set: str = "zero-shot",
                             cache_dir: str | os.PathLike | None = None) -> Recording:
    """The partition as a zero-trial recording, from the (cached) trial table only."""
    from mindsight.io.headers import empty_recording

    index = read_index(root, cache_dir)
    _, _, concept_names = _selection(index, subject, partition, test_set, images)
    return empty_recording(list(CH_NAMES_62), SFREQ, index.times(), subject, partition, concept_names,
                           _description(index, subject, partition, test_set, images))


def write_eeg_imagenet(path: str | os.PathLike, eeg: np.ndarray, labels: Sequence[str],
                       granularity: Sequence[str], subjects: Sequence[int], images: Sequence[str]) -> Path:
    """Write trials in the release's layout: ``eeg`` (n_trials, 62, n_samples) in µV, one
    label (wnid), granularity, subject (from 1; stored from 0) and image file name per trial,
    as one ``torch.save`` file, atomically."""
    import torch

    eeg = np.asarray(eeg)
    n = len(eeg)
    if eeg.ndim != 3 or eeg.shape[1] != len(CH_NAMES_62):
        raise DataFormatError(f"eeg must be (n_trials, {len(CH_NAMES_62)} channels, samples), got {eeg.shape}")
    if not len(labels) == len(granularity) == len(subjects) == len(images) == n:
        raise DataFormatError(f"{n} trials need {n} labels, granularities, subjects and images")
    kind = dict(zip(map(str, labels), map(str, granularity), strict=True))
    content = {
        "dataset": [{"eeg_data": torch.tensor(eeg[i]), "label": str(labels[i]), "granularity": str(granularity[i]),
                     "subject": int(subjects[i]) - 1, "image": str(images[i])} for i in range(n)],
        "labels": sorted(kind, key=lambda w: (GRANULARITIES.index(kind[w]), w)),  # coarse, then fine
        "images": sorted(set(map(str, images))),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(content, tmp)
    return path


# -- the dataset's entry in the registry (mindsight.io.datasets) ---------------------------------
def _describe(root: Path, cache_dir: Any = None) -> list[Finding]:
    index = read_index(root, cache_dir)
    parts = split(index, "zero-shot")
    rows = []
    for s in index.subjects:
        mine = index.subject == s
        for p, sp in parts.items():
            trials = mine & np.isin(index.image, sp.images)
            n = int(np.count_nonzero(trials))
            rows.append({"subject": s, "partition": f"{p} (zero-shot)", "shape": [n, *index.shape],
                         "n_chans": index.shape[0], "n_times": index.shape[1], "sfreq": SFREQ,
                         "tmin": 0.0, "tmax": round((index.shape[1] - 1) / SFREQ, 4),
                         "images": len(np.unique(index.image[trials])),
                         "concepts": len(sp.classes), "dtype": index.dtype, "file": index.source})
    coarse = sum(g == "coarse" for g in index.granularity)
    desc = (f"{LAYOUTS['eeg-imagenet']}: {len(index.subject)} trials of {len(index.subjects)} subjects, "
            f"{len(index.labels)} classes ({coarse} coarse, {len(index.labels) - coarse} fine), "
            f"{len(index.images)} images, EEG in {UNIT}; zero-shot split: every {ZERO_SHOT_EVERY}th class "
            "of each granularity held out for test")
    return [Finding("preprocessed", "eeg-imagenet", desc, root, rows)]


class EEGImageNet(Dataset):
    """EEG-ImageNet (Zhu et al. 2024): 62-channel EEG at 1000 Hz of 16 subjects viewing 80
    ImageNet classes × 50 images; test sets ``zero-shot`` (default) and ``per-image``."""

    name = DATASET
    description = "EEG-ImageNet (Zhu et al. 2024), the released .pth file(s)"
    layouts = LAYOUTS
    test_sets = TEST_SETS

    def find(self, root: Path, subject: int | None = None) -> list[ReleaseFile]:
        """The release file(s) by name; every file holds all its subjects, so ``subject`` does
        not narrow the list."""
        return find_eeg_imagenet(root)

    def subjects(self, root: Path) -> list[int]:
        return read_index(root).subjects

    def read(self, root: Path, subject: int, partition: str, images: ImageSet | None = None, *,
             test_set: str = DEFAULT_TEST_SET, cache_dir: str | os.PathLike | None = None) -> Recording:
        return read_eeg_imagenet(root, subject, partition, images, test_set=self.resolve_test_set(test_set, root),
                                 cache_dir=cache_dir)

    def header(self, root: Path, subject: int, partition: str, images: ImageSet | None = None, *,
               test_set: str = DEFAULT_TEST_SET, cache_dir: str | os.PathLike | None = None) -> Recording:
        return read_eeg_imagenet_header(root, subject, partition, images,
                                        test_set=self.resolve_test_set(test_set, root), cache_dir=cache_dir)

    def images(self, data_root: Path, images_path: Path | None, *, test_set: str = DEFAULT_TEST_SET,
               subject: int | None = None) -> ImageSet:
        test_set = self.resolve_test_set(test_set, data_root)
        if images_path is None:
            raise MissingFileError(NO_IMAGES)
        return eeg_imagenet_image_set(read_index(data_root), images_path, test_set, subject)

    def describe(self, root: Path) -> list[Finding]:
        return _describe(root) if find_eeg_imagenet(root) else []
