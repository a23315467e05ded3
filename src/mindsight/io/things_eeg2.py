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
from mindsight.io.containers import read_dict, read_npy, sniff
from mindsight.io.datasets import (
    DEFAULT_TEST_SET,
    NO_IMAGES,
    Dataset,
    Finding,
    occurrence_rank,
    walk_files,
)
from mindsight.io.images import ImageSet, read_image_set
from mindsight.io.timeaxis import epoch_times, sfreq_from_times, time_row
from mindsight.output import progress_callback
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
    bar = progress_callback(f"caching {found.path.name} (sub-{subject:02d})", "cond")
    if found.layout == "things-eeg2-dataset":
        data, ch_names, times, image, repetition, session = _read_package_layout(
            found, cache_dir, use_cache, bar
        )
        n_conditions = int(image.max()) + 1
    else:
        arr, extras = load_float32(
            found.path, EEG_KEY, cache_dir, use_cache=use_cache, required=("ch_names", "times"),
            on_rows=bar,
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
        sfreq=sfreq_from_times(times, found.path),
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
    arr, _ = load_float32(found.path, None, cache_dir, use_cache=use_cache, on_rows=bar)
    n_ses, n_cond, n_reps, n_chans, n_times = arr.shape
    ch_names, times, conditions = package_meta(found, arr.shape)
    image = np.repeat(conditions.astype(np.int64).ravel() - 1, n_reps)
    session = np.repeat(np.arange(n_ses), n_cond * n_reps)
    data = arr.reshape(n_ses * n_cond * n_reps, n_chans, n_times)
    return data, ch_names, times, image, occurrence_rank(image), session


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


# -- the dataset's entry in the registry (mindsight.io.datasets) ---------------------------------
def read_things_eeg2_header(root: str | os.PathLike, subject: int, partition: str,
                            images: ImageSet | None = None) -> Recording:
    """One subject's partition as a zero-trial recording, from file headers only (the dict's
    ``ch_names``/``times`` and the data's shape through the lazy unpickler; for the package
    layout the NPY header, meta JSON and conditions file)."""
    from mindsight.io.headers import empty_recording, numeric_shape

    found = _locate(Path(root), subject, partition)
    if found.layout == "things-eeg2-dataset":
        package_files(found)
        shape = numeric_shape(read_npy(found.path), "array", found.path)
        ch_names, times, conditions = package_meta(found, shape)
        n_conditions = int(conditions.max())
    else:
        content = read_dict(found.path, required=(EEG_KEY, "ch_names", "times"))
        shape = numeric_shape(content[EEG_KEY], EEG_KEY, found.path)
        ch_names, times = dict_axes(found.path, shape, content["ch_names"], content["times"])
        n_conditions = shape[0]
    _, concept_names = _concepts(np.arange(n_conditions), partition, n_conditions, images, found.path)
    return empty_recording(ch_names, sfreq_from_times(times, found.path), times, subject, partition,
                           concept_names, {"dataset": DATASET, "layout": found.layout,
                                           "source": str(found.path), "subject": subject})


def _describe_preprocessed(f: PreprocessedFile) -> dict[str, Any]:
    row: dict[str, Any] = {"subject": f.subject, "partition": f.partition, "file": str(f.path)}
    if f.layout == "things-eeg2-dataset":
        arr = read_npy(f.path)
        meta = json.loads(f.meta_path.read_text()) if f.meta_path.is_file() else {}
        n_ses, n_cond, n_rep, n_ch, n_t = arr.shape
        conds = np.asarray(read_npy(f.conditions_path)) if f.conditions_path.is_file() else None
        n_images = len(np.unique(conds)) if conds is not None else None
        row.update(shape=list(arr.shape), axes="session×condition×repetition×channel×time",
                   n_chans=n_ch, n_times=n_t, images=n_images, dtype=str(arr.dtype))
        if "times" in meta:
            row.update(time_row(meta["times"], n_t, f.meta_path))
    else:
        content = read_dict(f.path, required=(EEG_KEY, "ch_names", "times"))
        arr = content[EEG_KEY]
        if not isinstance(arr, np.ndarray) or arr.ndim != 4:
            raise DataFormatError(f"{f.path}: {EEG_KEY!r} should be 4-D, found {getattr(arr, 'shape', arr)}")
        n_cond, n_rep, n_ch, n_t = arr.shape
        row.update(shape=list(arr.shape), axes="condition×repetition×channel×time",
                   n_chans=n_ch, n_times=n_t, images=n_cond, dtype=str(arr.dtype),
                   **time_row(content["times"], n_t, f.path))
    if row.get("images") is not None:
        row["concepts"] = (
            row["images"] // EXEMPLARS_PER_TRAIN_CONCEPT if f.partition == "train" else row["images"]
        )
    return row


def _describe_raw(root: Path) -> list[Finding]:
    sessions = find_raw_sessions(root)
    if not sessions:
        return []
    rows = []
    for subject, parts in sorted(sessions.items()):
        for part, files in parts.items():
            for p in files:
                d = read_dict(p, required=RAW_KEYS)
                x = d["raw_eeg_data"]
                sfreq = float(np.asarray(d["sfreq"]).item())
                n_eeg = sum(1 for t in d["ch_types"] if str(t) != "stim")
                rows.append({"subject": subject, "session": p.parent.name, "partition": part,
                             "n_chans": n_eeg, "n_samples": int(x.shape[1]), "sfreq": sfreq,
                             "duration_s": round(x.shape[1] / sfreq, 1), "file": str(p)})
    return [Finding("raw", "things-eeg2-raw", "THINGS-EEG2 raw release (NPY-dict per session)", root, rows)]


class ThingsEEG2(Dataset):
    """THINGS-EEG2 (Gifford et al. 2022): the official, NICE/ATM and things-eeg2-dataset
    preprocessed releases; the raw release is described, and read by ``mindsight preprocess``."""

    name = DATASET
    description = "THINGS-EEG2 (Gifford et al. 2022), preprocessed releases"
    layouts = LAYOUTS
    test_sets = (DEFAULT_TEST_SET,)

    def find(self, root: Path, subject: int | None = None) -> list[PreprocessedFile]:
        return find_preprocessed(root, subject)

    def read(self, root: Path, subject: int, partition: str, images: ImageSet | None = None, *,
             test_set: str = DEFAULT_TEST_SET, cache_dir: str | os.PathLike | None = None) -> Recording:
        self.resolve_test_set(test_set, root)
        return read_things_eeg2(root, subject, partition, images, cache_dir=cache_dir)

    def header(self, root: Path, subject: int, partition: str, images: ImageSet | None = None, *,
               test_set: str = DEFAULT_TEST_SET, cache_dir: str | os.PathLike | None = None) -> Recording:
        self.resolve_test_set(test_set, root)
        return read_things_eeg2_header(root, subject, partition, images)

    def images(self, data_root: Path, images_path: Path | None, *, test_set: str = DEFAULT_TEST_SET,
               subject: int | None = None) -> ImageSet:
        self.resolve_test_set(test_set, data_root)
        if images_path is None:
            raise MissingFileError(NO_IMAGES)
        return read_image_set(images_path)

    def describe(self, root: Path) -> list[Finding]:
        pre = find_preprocessed(root)
        findings = []
        for layout, desc in LAYOUTS.items():
            files = sorted((f for f in pre if f.layout == layout), key=lambda f: (f.subject, f.partition))
            if files:
                findings.append(Finding("preprocessed", layout, desc, root,
                                        [_describe_preprocessed(f) for f in files]))
        return findings + _describe_raw(root)

    def resolve_test_set(self, test_set: str, root: Any = None) -> str:
        if test_set == "large":  # THINGS-MEG's large test set, asked of THINGS-EEG2
            from mindsight.io.things_meg import large_unavailable

            raise large_unavailable(root, "THINGS-EEG2, which has one test set")
        return super().resolve_test_set(test_set, root)
