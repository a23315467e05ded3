"""Readers for THINGS-EEG2 (Gifford et al. 2022) as researchers have it on disk.

Three preprocessed layouts, found automatically under a root directory:

``official``
    ``sub-XX/preprocessed_eeg_{training,test}.npy``, ``np.save`` of a dict (NPY container):
    ``preprocessed_eeg_data`` (conditions × repetitions × 17 channels × 100 samples, 100 Hz),
    ``ch_names``, ``times``.
``nice-atm``
    Same names and keys, 63 channels × 250 samples at 250 Hz, but a raw pickle; ``times`` keeps
    300 values (-0.2..0.996 s) for 250 samples, of which the last 250 (from 0 s) belong to the
    data. Only that case of a longer ``times`` is accepted (:func:`~mindsight.io.timeaxis.epoch_times`).
``things-eeg2-dataset``
    ``sub-XX/preprocessed_eeg_{training,test}_sub-XX.npy`` (sessions × conditions × repetitions ×
    channels × times, float32), ``img_conditions_{training,test}_sub-XX.npy`` (1-based image
    conditions per session) and ``meta_sub-XX.json`` (``ch_names``, ``times``).

and the raw release ``raw_data/sub-XX/ses-0Y/raw_eeg_{training,test}.npy`` (see
:mod:`mindsight.preprocess`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.cache import load_float32
from mindsight.io.containers import read_npy, sniff
from mindsight.io.images import ImageSet, read_image_set
from mindsight.io.timeaxis import epoch_times
from mindsight.recording import Recording, Trials, check_disjoint_concepts, check_same_channels

DATASET = "THINGS-EEG2"
FILE_PARTITION = {"train": "training", "test": "test"}
EXEMPLARS_PER_TRAIN_CONCEPT = 10
EEG_KEY = "preprocessed_eeg_data"

CH_NAMES_17 = ("Pz P3 P7 O1 Oz O2 P4 P8 P1 P5 PO7 PO3 POz PO4 PO8 P6 P2").split()
CH_NAMES_63 = (
    "Fp1 Fp2 AF7 AF3 AFz AF4 AF8 F7 F5 F3 F1 F2 F4 F6 F8 FT9 FT7 FC5 FC3 FC1 FCz FC2 FC4 FC6 FT8 "
    "FT10 T7 C5 C3 C1 Cz C2 C4 C6 T8 TP9 TP7 CP5 CP3 CP1 CPz CP2 CP4 CP6 TP8 TP10 P7 P5 P3 P1 Pz "
    "P2 P4 P6 P8 PO7 PO3 POz PO4 PO8 O1 Oz O2"
).split()

LAYOUTS = {
    "official": "THINGS-EEG2 official preprocessed release (np.save dict, NPY container)",
    "nice-atm": "NICE/ATM 250 Hz preprocessed release (raw pickle with .npy suffix)",
    "things-eeg2-dataset": "things-eeg2-dataset package processed layout (per-session arrays + meta JSON)",
}

_SUBJECT_DIR = re.compile(r"^sub-(\d+)$")
_OFFICIAL_FILE = re.compile(r"^preprocessed_eeg_(training|test)\.npy$")
_PACKAGE_FILE = re.compile(r"^preprocessed_eeg_(training|test)_sub-(\d+)\.npy$")
_RAW_FILE = re.compile(r"^raw_eeg_(training|test)\.npy$")
_SKIP_DIRS = {"training_images", "test_images", "__pycache__", ".git"}
_MAX_DEPTH = 5


@dataclass(frozen=True)
class PreprocessedFile:
    """One partition file of a preprocessed release, located on disk."""

    path: Path
    layout: str
    subject: int
    partition: str

    @property
    def conditions_path(self) -> Path:
        return self.path.parent / f"img_conditions_{FILE_PARTITION[self.partition]}_sub-{self.subject:02d}.npy"

    @property
    def meta_path(self) -> Path:
        return self.path.parent / f"meta_sub-{self.subject:02d}.json"


def walk_files(root: Path) -> list[Path]:
    """Files under ``root`` (or ``root`` itself), skipping image folders, to a bounded depth."""
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


def _classify_preprocessed(path: Path) -> PreprocessedFile | None:
    if m := _OFFICIAL_FILE.match(path.name):
        sub = _SUBJECT_DIR.match(path.parent.name)
        if not sub:
            return None
        container = sniff(path)
        layout = {"npy": "official", "pickle": "nice-atm"}.get(container)
        if layout is None:
            raise DataFormatError(
                f"{path}: neither an NPY file nor a pickle (looks like {container!r}); "
                "the file is corrupt or not a THINGS-EEG2 release file"
            )
        part = "train" if m.group(1) == "training" else "test"
        return PreprocessedFile(path, layout, int(sub.group(1)), part)
    if m := _PACKAGE_FILE.match(path.name):
        part = "train" if m.group(1) == "training" else "test"
        return PreprocessedFile(path, "things-eeg2-dataset", int(m.group(2)), part)
    return None


def find_preprocessed(root: str | os.PathLike, subject: int | None = None) -> list[PreprocessedFile]:
    """All preprocessed THINGS-EEG2 partition files under ``root`` (optionally one subject)."""
    found = [f for p in walk_files(Path(root)) if (f := _classify_preprocessed(p)) is not None]
    return [f for f in found if subject is None or f.subject == subject]


def _locate(root: Path, subject: int, partition: str) -> PreprocessedFile:
    files = [f for f in find_preprocessed(root, subject) if f.partition == partition]
    if not files:
        subjects = sorted({f.subject for f in find_preprocessed(root)})
        hint = (
            f"subjects found: {', '.join(f'sub-{s:02d}' for s in subjects)}"
            if subjects
            else "no preprocessed THINGS-EEG2 files found there; layouts read: "
            + "; ".join(LAYOUTS.values())
        )
        raise MissingFileError(
            f"{root}: no {FILE_PARTITION[partition]} file for sub-{subject:02d} ({hint})"
        )
    if len(files) > 1:
        listing = "; ".join(f"{f.path} ({f.layout})" for f in files)
        raise DataFormatError(
            f"{root}: several {FILE_PARTITION[partition]} files for sub-{subject:02d}: {listing}. "
            "Pass the directory of the release you mean."
        )
    return files[0]


def _sfreq_from_times(times: np.ndarray, source: Path) -> float:
    if times.ndim != 1 or len(times) < 2:
        raise DataFormatError(f"{source}: 'times' must hold at least 2 values, got shape {times.shape}")
    step = np.diff(times)
    if np.any(step <= 0) or not np.allclose(step, step.mean(), rtol=1e-3, atol=1e-7):
        raise DataFormatError(f"{source}: 'times' are not evenly spaced and increasing")
    return float(np.round(1.0 / step.mean(), 6))


def _concepts(
    image: np.ndarray, partition: str, n_conditions: int, images: ImageSet | None, source: Path
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Concept of each trial: from the image set when given, else from the documented order."""
    if images is not None:
        part = images[partition]
        if len(part) != n_conditions:
            raise DataFormatError(
                f"{source}: {n_conditions} {FILE_PARTITION[partition]} image conditions, but the "
                f"image set at {part.root} lists {len(part)} {partition} images"
            )
        return part.concept[image], part.concept_names
    if partition == "test":
        return image.copy(), None
    if n_conditions % EXEMPLARS_PER_TRAIN_CONCEPT:
        raise DataFormatError(
            f"{source}: {n_conditions} training conditions is not a multiple of "
            f"{EXEMPLARS_PER_TRAIN_CONCEPT} exemplars per concept; pass the image set (--images) "
            "so concepts come from image_metadata.npy"
        )
    return image // EXEMPLARS_PER_TRAIN_CONCEPT, None


def _occurrence_rank(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements share its key (0, 1, 2, ...)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys)) - first
    return rank


def _progress(desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit="cond", leave=False)
        bar["bar"].n = done
        bar["bar"].refresh()
        if done >= total:
            bar["bar"].close()

    return update


def dict_axes(
    path: Path, shape: tuple[int, ...], ch_names: Any, times: Any
) -> tuple[list[str], np.ndarray]:
    """(channel names, sample times) of an ``official`` / ``nice-atm`` file whose
    ``preprocessed_eeg_data`` has ``shape``, checked against it (times by :func:`epoch_times`).

    Shared by the reader and the header-only reader, so both accept exactly the same files.
    """
    if len(shape) != 4:
        raise DataFormatError(
            f"{path}: {EEG_KEY!r} has shape {tuple(shape)}; expected 4 axes "
            "(image conditions, repetitions, channels, times)"
        )
    names = [str(c) for c in ch_names]
    if len(names) != shape[2]:
        raise DataFormatError(
            f"{path}: 'ch_names' has {len(names)} names for {shape[2]} channels "
            f"({EEG_KEY!r} shape {tuple(shape)})"
        )
    return names, epoch_times(times, shape[3], path)


def read_things_eeg2(
    root: str | os.PathLike,
    subject: int,
    partition: str = "train",
    images: str | os.PathLike | ImageSet | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> Recording:
    """Read one subject's preprocessed THINGS-EEG2 partition (``train`` or ``test``).

    ``root`` may be the release directory, a ``sub-XX`` folder, or a project folder above them;
    the layout is recognised from file names and containers. With ``images`` (a path or an
    :class:`ImageSet`) concepts and their names come from the image metadata, and a mismatch in
    the number of images is an error. The first read of a large file converts it to the float32
    cache (see :mod:`mindsight.io.cache`); later reads memory-map it.
    """
    if partition not in FILE_PARTITION:
        raise DataFormatError(f"partition must be 'train' or 'test', got {partition!r}")
    root = Path(root)
    found = _locate(root, subject, partition)
    if images is not None and not isinstance(images, ImageSet):
        images = read_image_set(images)
    bar = _progress(f"caching {found.path.name} (sub-{subject:02d})", progress)
    if found.layout == "things-eeg2-dataset":
        data, ch_names, times, image, repetition, session = _read_package_layout(
            found, cache_dir, use_cache, bar
        )
        n_conditions = int(image.max()) + 1
    else:
        arr, extras = load_float32(
            found.path, EEG_KEY, cache_dir, use_cache=use_cache, required=("ch_names", "times"),
            progress=bar,
        )
        ch_names, times = dict_axes(found.path, arr.shape, extras["ch_names"], extras["times"])
        n_conditions, n_reps, n_chans, n_times = arr.shape
        data = arr.reshape(n_conditions * n_reps, n_chans, n_times)
        image = np.repeat(np.arange(n_conditions), n_reps)
        repetition = np.tile(np.arange(n_reps), n_conditions)
        session = None
    concept, concept_names = _concepts(image, partition, n_conditions, images, found.path)
    trials = Trials.build(image, concept, subject, repetition=repetition, session=session)
    return Recording(
        data=data,
        ch_names=tuple(ch_names),
        sfreq=_sfreq_from_times(times, found.path),
        times=times,
        trials=trials,
        partition=partition,
        concept_names=concept_names,
        description={
            "dataset": DATASET,
            "layout": found.layout,
            "source": str(found.path),
            "subject": subject,
            "images": str(images.root) if isinstance(images, ImageSet) else None,
        },
    )


def package_files(found: PreprocessedFile) -> None:
    """The things-eeg2-dataset layout's conditions and meta files must be beside the data."""
    for p in (found.conditions_path, found.meta_path):
        if not p.is_file():
            raise MissingFileError(
                f"{p}: missing; the things-eeg2-dataset layout needs it beside {found.path.name}"
            )


def package_meta(
    found: PreprocessedFile, shape: tuple[int, ...]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(channel names, sample times, 1-based conditions per session) of a things-eeg2-dataset
    file whose data have ``shape``, read from its meta JSON and conditions file and checked.

    Shared by the reader and the header-only reader; the package writes one time per sample,
    so here the lengths must match exactly.
    """
    if len(shape) != 5:
        raise DataFormatError(
            f"{found.path}: shape {tuple(shape)}; expected 5 axes "
            "(sessions, image conditions, repetitions, channels, times)"
        )
    n_ses, n_cond, _, n_chans, n_times = shape
    conditions = np.asarray(read_npy(found.conditions_path))
    if conditions.shape != (n_ses, n_cond):
        raise DataFormatError(
            f"{found.conditions_path}: shape {conditions.shape}, expected ({n_ses}, {n_cond}) "
            f"to match {found.path.name} {tuple(shape)}"
        )
    if conditions.min() < 1:
        raise DataFormatError(f"{found.conditions_path}: conditions are 1-based, found {conditions.min()}")
    try:
        meta = json.loads(found.meta_path.read_text())
        ch_names, times = [str(c) for c in meta["ch_names"]], np.asarray(meta["times"], float)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(
            f"{found.meta_path}: expected JSON with 'ch_names' and 'times' ({exc})"
        ) from None
    if len(ch_names) != n_chans or len(times) != n_times:
        raise DataFormatError(
            f"{found.meta_path}: {len(ch_names)} channel names and {len(times)} times for data "
            f"of shape {tuple(shape)}"
        )
    return ch_names, times, conditions


def _read_package_layout(found: PreprocessedFile, cache_dir, use_cache: bool, bar):
    package_files(found)
    arr, _ = load_float32(found.path, None, cache_dir, use_cache=use_cache, progress=bar)
    n_ses, n_cond, n_reps, n_chans, n_times = arr.shape
    ch_names, times, conditions = package_meta(found, arr.shape)
    image = np.repeat(conditions.astype(np.int64).ravel() - 1, n_reps)
    session = np.repeat(np.arange(n_ses), n_cond * n_reps)
    data = arr.reshape(n_ses * n_cond * n_reps, n_chans, n_times)
    return data, ch_names, times, image, _occurrence_rank(image), session


def read_things_eeg2_subject(
    root: str | os.PathLike,
    subject: int,
    images: str | os.PathLike | ImageSet | None = None,
    **kwargs: Any,
) -> dict[str, Recording]:
    """Both partitions of one subject, checked to share channels and to have disjoint concepts."""
    if images is not None and not isinstance(images, ImageSet):
        images = read_image_set(images)
    recs = {p: read_things_eeg2(root, subject, p, images, **kwargs) for p in FILE_PARTITION}
    check_same_channels(recs["train"], recs["test"])
    check_disjoint_concepts(recs["train"], recs["test"])
    return recs


# -- raw release ------------------------------------------------------------------------------
RAW_KEYS = ("raw_eeg_data", "ch_names", "ch_types", "sfreq")


def find_raw_sessions(root: str | os.PathLike, subject: int | None = None) -> dict[int, dict[str, list[Path]]]:
    """``{subject: {'train': [ses-01 file, ...], 'test': [...]}}`` for the raw release under root."""
    out: dict[int, dict[str, list[Path]]] = {}
    for p in walk_files(Path(root)):
        m = _RAW_FILE.match(p.name)
        sub = _SUBJECT_DIR.match(p.parent.parent.name) if m else None
        if not (m and sub and p.parent.name.startswith("ses-")):
            continue
        s = int(sub.group(1))
        if subject is not None and s != subject:
            continue
        part = "train" if m.group(1) == "training" else "test"
        out.setdefault(s, {"train": [], "test": []})[part].append(p)
    for parts in out.values():
        for files in parts.values():
            files.sort(key=lambda q: q.parent.name)
    return out
