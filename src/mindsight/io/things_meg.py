"""Readers and writers for THINGS-MEG (Hebart et al. 2023, OpenNeuro ds004212).

Two preprocessed layouts, found automatically under a root directory:

``official``
    The authors' derivative ``derivatives/preprocessed/preprocessed_P{n}-epo.fif`` (MNE epochs:
    271 CTF magnetometers, 200 Hz, -0.1..1.3 s = 281 samples, ``events[:, 2]`` = the
    ``things_image_nr`` of the image shown) joined with ``sourcedata/sample_attributes_P{n}.csv``
    (one row per trial). Both are found anywhere under the root; a root of
    ``derivatives/preprocessed`` also finds ``../../sourcedata``. Without the CSV, the metadata
    stored in the epochs file (the same table) is used.
``atm``
    ATM's per-subject pickles ``sub-XX/preprocessed_meg_training.pkl``
    (``meg_data`` of shape concepts × images × 1 × channels × times = 1654 × 12 × 1 × 271 × 201)
    and ``sub-XX/preprocessed_meg_zs_test.pkl`` (200 × 1 × 12 × 271 × 201), both with
    ``ch_names`` and ``times`` (0..1 s at 200 Hz).

What the real files hold, from the code that wrote them:

- ViCCo-Group/THINGS-data ``MEG/step1_preprocessing.py`` epochs every stimulus onset of every run
  (trigger ``UPPT001``; the event value is the ``value`` column of the run's ``events.tsv``,
  whose missing values — the catch trials — become ``999999``), keeps ``picks='mag'``, z-scores
  each epoch against its baseline, concatenates the 12 sessions, sets the whole
  ``sample_attributes_P{n}.csv`` as the epochs' metadata and decimates 1200 → 200 Hz. So the CSV
  rows and the epochs correspond one to one, in order, **catch trials included**. MNE splits
  files over 2 GB: ``preprocessed_P{n}-epo.fif`` continues in ``-epo-1.fif``, ``-epo-2.fif``…,
  which are read (and keyed in the cache) with it.
- The analyses there (``step2c``, ``step3a``, ``step3e``, ``step3c`` joins the CSV to the stacked
  epochs row by row) select ``trial_type`` ``exp`` (22,248 trials: each of 1,854 concepts × 12
  images once, one exemplar of every concept per session), ``test`` (200 images of 200 concepts,
  once per session → 12 repetitions) and ``catch``, using ``session_nr`` and
  ``things_category_nr``. Other projects reading the CSV take ``image_path`` (column 8) as
  ``images_meg/<concept>/<file>.jpg`` for exp trials, ``images_test_meg/<concept>_NNs.jpg`` (no
  concept folder) for test trials and ``images_catch_meg/catchNNN.jpg`` for catch trials.
- ATM (dongyangli-del/EEG_Image_decode ``MEG-preprocessing/preprocess_meg.py``) crops 0..1 s,
  sorts epochs by event value, drops ``999999`` (catch), calls the images seen 12 times the
  zero-shot test set, drops training images whose concept is a test concept and pickles
  (protocol 4) numpy arrays from ``epochs.get_data()`` (float32 after its z-score step) with
  ``ch_names`` (a list) and ``times``. Torch tensors in such a pickle are read too.

mindsight's partitions of the official layout (catch trials are always dropped):

``train``
    exp trials whose concept is not a test concept (the concepts of the test trials). Image i
    is the i-th training image by ``things_image_nr``; concept = index among the sorted training
    ``things_category_nr``; concept names from the ``image_path`` folder.
``test``, ``test_set='small'``
    the test trials: image = index among the test images by ``things_image_nr``, repetition =
    occurrence rank (averaging is :meth:`Recording.average_repetitions`'s job).
``test``, ``test_set='large'``
    the exp trials of the test concepts: 200 concepts × 12 images, one trial each (the large
    test set of Benchetrit et al. 2024).

Sessions are 0-based (``session_nr - 1``). :func:`things_meg_image_set` lists the images of each
partition in exactly this order, so ``Trials.image`` indexes it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mindsight._atomic import atomic_path
from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.cache import cached_json, load_float32, load_float32_rows, lookup_float32
from mindsight.io.containers import (
    _Blob,
    _LazyUnpickler,
    _unpickle,
    read_dict,
    sniff,
    write_pickle_dict,
)
from mindsight.io.datasets import (
    DEFAULT_TEST_SET,
    NO_IMAGES,
    Dataset,
    Finding,
    occurrence_rank,
    walk_files,
)
from mindsight.io.images import ImagePartition, ImageSet, concept_name, read_image_set
from mindsight.io.tensors import read_torch_dict
from mindsight.io.timeaxis import epoch_times, sfreq_from_times, time_row
from mindsight.output import progress_callback
from mindsight.recording import Recording, Trials

DATASET = "THINGS-MEG"
LAYOUTS = {
    "official": "THINGS-MEG official derivative (MNE epochs preprocessed_P{n}-epo.fif + "
    "sample_attributes_P{n}.csv)",
    "atm": "ATM's THINGS-MEG pickles (sub-XX/preprocessed_meg_{training,zs_test}.pkl)",
}
TEST_SETS = ("small", "large")
TRIAL_TYPES = ("exp", "test", "catch")
CATCH_EVENT = 999999  # event value of catch trials in the official epochs
REQUIRED_COLUMNS = ("trial_type", "session_nr", "things_category_nr", "things_image_nr", "image_path")
ATM_KEYS = ("meg_data", "preprocessed_meg_data")
ATM_FILES = {"train": "preprocessed_meg_training.pkl", "test": "preprocessed_meg_zs_test.pkl"}

_EPOCHS_FILE = re.compile(r"^preprocessed_P(\d+)-epo\.fif$")
_ATTRIBUTES_FILE = re.compile(r"^sample_attributes_P(\d+)\.csv$")
_ATM_FILE = re.compile(r"^preprocessed_meg_(training|zs_test)\.pkl$")
_SUBJECT_DIR = re.compile(r"^sub-(\d+)$")


@dataclass(frozen=True)
class MegFile:
    """One THINGS-MEG file on disk: an official epochs file (both partitions) or an ATM pickle."""

    path: Path
    layout: str  # 'official' or 'atm'
    subject: int
    partition: str | None  # 'train'/'test' for ATM; None: the official file holds both
    attributes: tuple[Path, ...] = field(default=())  # official: sample_attributes CSV(s) found

    @property
    def parts(self) -> list[Path]:
        """The file and, for a split MNE file, its continuation files (``-epo-1.fif``, ...)."""
        if self.layout != "official":
            return [self.path]
        stem = self.path.name[: -len(".fif")]
        split = re.compile(rf"^{re.escape(stem)}-(\d+)\.fif$")
        extra = sorted(
            (int(m.group(1)), p) for p in self.path.parent.iterdir() if (m := split.match(p.name))
        )
        return [self.path, *(p for _, p in extra)]


def find_things_meg(root: str | os.PathLike, subject: int | None = None) -> list[MegFile]:
    """All THINGS-MEG files (official epochs with their CSVs, ATM pickles) under ``root``."""
    files = walk_files(Path(root))
    csvs: dict[int, list[Path]] = {}
    for p in files:
        if m := _ATTRIBUTES_FILE.match(p.name):
            csvs.setdefault(int(m.group(1)), []).append(p)
    found = []
    for p in files:
        if m := _EPOCHS_FILE.match(p.name):
            n = int(m.group(1))
            attrs = csvs.get(n, [])
            if not attrs:  # root = derivatives/preprocessed: look in the BIDS sourcedata too
                bids = p.parent.parent.parent / "sourcedata" / f"sample_attributes_P{n}.csv"
                attrs = [bids] if bids.is_file() else []
            found.append(MegFile(p, "official", n, None, tuple(attrs)))
        elif (m := _ATM_FILE.match(p.name)) and (sub := _SUBJECT_DIR.match(p.parent.name)):
            part = "train" if m.group(1) == "training" else "test"
            found.append(MegFile(p, "atm", int(sub.group(1)), part))
    return [f for f in found if subject is None or f.subject == subject]


def _subject_hint(root: Path) -> str:
    subjects = sorted({f.subject for f in find_things_meg(root)})
    if subjects:
        return "subjects found: " + ", ".join(f"sub-{s:02d}" for s in subjects)
    return "no THINGS-MEG files found there; layouts read: " + "; ".join(LAYOUTS.values())


def _locate(root: Path, subject: int, partition: str) -> MegFile:
    files = [f for f in find_things_meg(root, subject) if f.partition in (None, partition)]
    if not files:
        raise MissingFileError(
            f"{root}: no THINGS-MEG {partition} data for subject {subject} "
            f"(preprocessed_P{subject}-epo.fif or sub-{subject:02d}/{ATM_FILES[partition]}; "
            f"{_subject_hint(root)})"
        )
    if len(files) > 1:
        listing = "; ".join(f"{f.path} ({f.layout})" for f in files)
        raise DataFormatError(
            f"{root}: several THINGS-MEG {partition} files for subject {subject}: {listing}. "
            "Pass the directory of the release you mean."
        )
    return files[0]


# -- sample attributes ------------------------------------------------------------------------
def _check_attributes(df: Any, source: str) -> Any:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataFormatError(
            f"{source}: missing column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}"
        )
    types = df["trial_type"].astype(str).str.strip()
    unknown = sorted(set(types) - set(TRIAL_TYPES))
    if unknown:
        row = int(np.flatnonzero(~types.isin(TRIAL_TYPES))[0])
        raise DataFormatError(
            f"{source}: trial_type must be one of {', '.join(TRIAL_TYPES)}; found {unknown[:5]} "
            f"(first at row {row})"
        )
    df = df.reset_index(drop=True)
    df["trial_type"] = types.to_numpy()
    df["image_path"] = df["image_path"].astype(str).str.replace("\\", "/", regex=False)
    return df


def read_sample_attributes(path: str | os.PathLike) -> Any:
    """``sample_attributes_P{n}.csv`` as a pandas DataFrame, its columns checked."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV table ({exc})") from None
    return _check_attributes(df, str(path))


def attributes_table(found: MegFile) -> tuple[Any, str]:
    """(table, where it came from): the CSV, else the metadata stored in the epochs file."""
    if len(found.attributes) > 1:
        raise DataFormatError(
            f"several sample attribute tables for subject {found.subject}: "
            f"{', '.join(map(str, found.attributes))}. Pass a folder holding only one."
        )
    if found.attributes:
        return read_sample_attributes(found.attributes[0]), str(found.attributes[0])
    epochs = _open_epochs(found.path)
    if epochs.metadata is None:
        raise MissingFileError(
            f"sample_attributes_P{found.subject}.csv not found under the data folder (it is in the "
            f"release's sourcedata/), and {found.path} stores no metadata to use instead"
        )
    return _check_attributes(epochs.metadata, f"{found.path} (metadata)"), f"{found.path} (metadata)"


def _int_column(df: Any, column: str, rows: np.ndarray, source: str) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)[rows]
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = int(rows[np.flatnonzero(bad)[0]])
        raise DataFormatError(
            f"{source}: {column} must be a whole number for {df['trial_type'].iloc[row]} trials; "
            f"row {row} (line {row + 2}) has {df[column].iloc[row]!r}"
        )
    return values.astype(np.int64)


def _concept_folder(image_path: str) -> str:
    """``images_meg/coat_rack/coat_rack_01b.jpg`` → ``coat_rack``; a test image without a
    concept folder (``images_test_meg/coat_rack_13s.jpg``) → its name less the exemplar."""
    parts = PurePosixPath(image_path).parts
    if len(parts) >= 3:
        return parts[-2]
    stem = PurePosixPath(image_path).stem
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


@dataclass(frozen=True)
class Selection:
    """The trials (CSV rows) of one partition and the images they show, in mindsight's order."""

    rows: np.ndarray  # CSV row of each trial (ascending)
    image: np.ndarray  # per trial: index into image_nrs
    concept: np.ndarray  # per trial: index into concept_folders
    session: np.ndarray  # per trial, 0-based
    image_nrs: np.ndarray  # things_image_nr of each image, sorted
    image_paths: tuple[str, ...]  # image_path of each image
    image_concept: np.ndarray  # per image: index into concept_folders
    concept_folders: tuple[str, ...]  # per concept, sorted by things_category_nr

    @property
    def concept_names(self) -> tuple[str, ...]:
        return tuple(concept_name(f) for f in self.concept_folders)


def select_partition(df: Any, partition: str, test_set: str = "small", source: str = "table") -> Selection:
    """The trials of ``partition`` ('train' or 'test' with ``test_set``) in a sample-attributes
    table: see the module docstring for the definitions."""
    if partition not in ("train", "test"):
        raise DataFormatError(f"partition must be 'train' or 'test', got {partition!r}")
    if test_set not in TEST_SETS:
        raise DataFormatError(f"test_set must be one of {TEST_SETS}, got {test_set!r}")
    types = df["trial_type"].to_numpy()
    exp_rows, test_rows = np.flatnonzero(types == "exp"), np.flatnonzero(types == "test")
    if len(exp_rows) == 0 or len(test_rows) == 0:
        raise DataFormatError(
            f"{source}: needs both exp and test trials, found {len(exp_rows)} exp and "
            f"{len(test_rows)} test trials"
        )
    category = np.full(len(df), -1, dtype=np.int64)
    for rows in (exp_rows, test_rows):
        category[rows] = _int_column(df, "things_category_nr", rows, source)
    test_categories = np.unique(category[test_rows])
    in_test = np.isin(category, test_categories)
    if partition == "train":
        rows = exp_rows[~in_test[exp_rows]]
    elif test_set == "small":
        rows = test_rows
    else:
        rows = exp_rows[in_test[exp_rows]]
    if len(rows) == 0:
        raise DataFormatError(
            f"{source}: no {partition} trials (every exp concept is also a test concept)"
        )
    image_nr = _int_column(df, "things_image_nr", rows, source)
    session = _int_column(df, "session_nr", rows, source) - 1
    paths = df["image_path"].to_numpy()
    folders: dict[int, str] = {}  # concept → image folder, from the exp trials (which have one)
    for r in exp_rows:
        folders.setdefault(int(category[r]), _concept_folder(paths[r]))
    image_nrs, first, image = np.unique(image_nr, return_index=True, return_inverse=True)
    cats = category[rows]
    concept_nrs, concept = np.unique(cats, return_inverse=True)
    image_cats = cats[first]
    clash = np.flatnonzero(cats != image_cats[image])
    if clash.size:
        r = int(rows[clash[0]])
        raise DataFormatError(
            f"{source}: things_image_nr {image_nr[clash[0]]} belongs to two concepts "
            f"(row {r} says {category[r]}, another row {image_cats[image[clash[0]]]})"
        )
    concept_folders = tuple(
        folders.get(int(c)) or _concept_folder(paths[rows[first[np.flatnonzero(image_cats == c)[0]]]])
        for c in concept_nrs
    )
    return Selection(
        rows=rows,
        image=image.astype(np.int64),
        concept=concept.astype(np.int64),
        session=session,
        image_nrs=image_nrs,
        image_paths=tuple(str(paths[rows[i]]) for i in first),
        image_concept=np.searchsorted(concept_nrs, image_cats).astype(np.int64),
        concept_folders=concept_folders,
    )


# -- the official epochs file -------------------------------------------------------------------
def _open_epochs(path: Path) -> Any:
    import mne

    try:
        return mne.read_epochs(path, preload=False, verbose="error")
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        raise DataFormatError(
            f"{path}: not a readable MNE epochs file ({type(exc).__name__}: {exc}); "
            "re-download it (with its -epo-1.fif, -epo-2.fif, ... parts if split)"
        ) from None


def read_epochs_header(path: Path) -> dict[str, Any]:
    """Channels, times and events of an epochs file, without its data."""
    import mne

    epochs = _open_epochs(path)
    picks = mne.pick_types(epochs.info, meg="mag", ref_meg=False, exclude=[])
    if len(picks) == 0:
        types = sorted(set(epochs.get_channel_types()))
        raise DataFormatError(
            f"{path}: no MEG magnetometer ('mag') channels; channel types found: {', '.join(types)}"
        )
    return {
        "ch_names": [epochs.ch_names[i] for i in picks],
        "picks": [int(i) for i in picks],
        "sfreq": float(epochs.info["sfreq"]),
        "times": [float(t) for t in epochs.times],
        "events": [int(v) for v in epochs.events[:, 2]],
        "n_channels_total": len(epochs.ch_names),
    }


def join_epochs(df: Any, events: np.ndarray, table: str, epochs: str) -> np.ndarray:
    """Epoch index of each CSV row (-1: a catch row absent from the epochs).

    The rows and the epochs correspond one to one in order (as ``step1_preprocessing.py``
    writes them); epochs without the catch trials are matched with the non-catch rows. Any
    other count, or a ``things_image_nr`` that differs from ``events[:, 2]`` on a non-catch
    row, is a :class:`DataFormatError`.
    """
    events = np.asarray(events)
    types = df["trial_type"].to_numpy()
    noncatch = np.flatnonzero(types != "catch")
    if len(events) == len(df):
        rows = np.arange(len(df))
    elif len(events) == len(noncatch):
        rows = noncatch
    else:
        raise DataFormatError(
            f"{table} and {epochs} do not match: {len(df)} table rows ({len(noncatch)} without "
            f"catch trials) but {len(events)} epochs; they must correspond one to one, in order"
        )
    import pandas as pd

    image_nr = pd.to_numeric(df["things_image_nr"], errors="coerce").to_numpy(np.float64)[rows]
    check = types[rows] != "catch"
    bad = np.flatnonzero(check & ~(image_nr == events))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            f"{table} and {epochs} do not match: at epoch {i} (table row {rows[i]}, a "
            f"{types[rows[i]]} trial) things_image_nr is {df['things_image_nr'].iloc[rows[i]]!r} "
            f"but events[:, 2] is {int(events[i])} ({bad.size} of {int(check.sum())} non-catch "
            f"rows differ; {len(df)} rows, {len(events)} epochs)"
        )
    epoch_of_row = np.full(len(df), -1, dtype=np.int64)
    epoch_of_row[rows] = np.arange(len(rows))
    return epoch_of_row


def official_selection(found: MegFile, partition: str, test_set: str, images: ImageSet | None,
                       cache_dir: Any = None, use_cache: bool = True
                       ) -> tuple[dict[str, Any], Selection, np.ndarray, str]:
    """(epochs header, the partition's trials, their epoch indices, the table's name) of an
    official epochs file, from its header and the CSV only (no epoch data is read).

    Checks what can be checked without the data: channel positions, the CSV ↔ epochs join and,
    with ``images``, that the image set lists the partition's images in this order.
    """
    from mindsight.sensors import sensor_positions

    header = cached_json(found.parts, "things-meg-epochs-header",
                         lambda: read_epochs_header(found.path), cache_dir, use_cache=use_cache)
    sensor_positions(header["ch_names"])  # unknown names: the clear "missing sensor positions" error
    df, table = attributes_table(found)
    epoch_of_row = join_epochs(df, np.asarray(header["events"]), table, str(found.path))
    sel = select_partition(df, partition, test_set, table)
    epochs_idx = epoch_of_row[sel.rows]
    if np.any(epochs_idx < 0):
        raise DataFormatError(f"{table}: selected trials missing from {found.path}")
    if images is not None:  # before the (long) first conversion
        _check_image_order(images[partition], sel, table)
    return header, sel, epochs_idx, table


def _read_official(found: MegFile, subject: int, partition: str, test_set: str,
                   images: ImageSet | None, cache_dir: Any, use_cache: bool) -> Recording:
    parts = found.parts
    header, sel, epochs_idx, table = official_selection(found, partition, test_set, images,
                                                        cache_dir, use_cache)
    ch_names = header["ch_names"]
    n_times = len(header["times"])
    opened: dict[str, Any] = {}

    def read_rows(start: int, stop: int) -> np.ndarray:
        import mne

        with mne.utils.use_log_level("error"):
            if "epochs" not in opened:
                opened["epochs"] = _open_epochs(found.path)
                opened["epochs"].metadata = None  # not copied into every chunk
            return opened["epochs"][epochs_idx[start:stop]].get_data(picks=header["picks"])

    digest = hashlib.sha1(np.ascontiguousarray(epochs_idx).tobytes()).hexdigest()[:16]
    bar = progress_callback(f"caching {found.path.name} {partition} (sub-{subject:02d})", "cond")
    data, _ = load_float32_rows(
        parts, f"things-meg-{partition}-{digest}", (len(epochs_idx), len(ch_names), n_times),
        read_rows, cache_dir, use_cache=use_cache, on_rows=bar,
    )
    times = np.asarray(header["times"], dtype=np.float64)
    trials = Trials.build(sel.image, sel.concept, subject,
                          repetition=occurrence_rank(sel.image), session=sel.session)
    return Recording(
        data=data,
        ch_names=tuple(ch_names),
        sfreq=header["sfreq"],
        times=times,
        trials=trials,
        partition=partition,
        concept_names=sel.concept_names,
        description={
            "dataset": DATASET, "layout": "official", "source": str(found.path),
            "attributes": table, "subject": subject,
            "test_set": test_set if partition == "test" else None,
            "images": str(images.root) if images is not None else None,
        },
    )


def _check_image_order(part: ImagePartition, sel: Selection, table: str) -> None:
    """The image set must list the images of ``sel`` in its order (same file names)."""
    if len(part) != len(sel.image_paths):
        raise DataFormatError(
            f"{table}: {len(sel.image_paths)} {part.name} images, but the image set at {part.root} "
            f"lists {len(part)}; build it with things_meg_image_set (or read_images) from this table"
        )
    names = [PurePosixPath(f).name for f in part.files]
    for i, (a, b) in enumerate(zip(names, sel.image_paths, strict=True)):
        if a != PurePosixPath(b).name:
            raise DataFormatError(
                f"{table}: {part.name} image {i} is {b} but the image set at {part.root} lists "
                f"{part.files[i]} there; the image set is not in this recording's image order"
            )


# -- ATM pickles -----------------------------------------------------------------------------------
def _atm_key(content: dict[str, Any], path: Path) -> str:
    for key in ATM_KEYS:
        if key in content:
            return key
    raise DataFormatError(
        f"{path}: no {' or '.join(map(repr, ATM_KEYS))} key; the file has "
        f"{', '.join(map(repr, content)) or 'no keys'}"
    )


def read_atm_content(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """(the dict of an ATM pickle, its data key); numpy arrays stay memory-mapped, torch
    tensors are read into memory as numpy."""
    path = Path(path)
    try:
        content = read_dict(path)
    except DataFormatError as exc:
        if "torch" not in str(exc) and sniff(path) != "zip":
            raise
        content = read_torch_dict(path)
    for k in ("ch_names", "times"):
        if k not in content:
            raise DataFormatError(f"{path}: missing key {k!r}; the file has {', '.join(map(repr, content))}")
    return content, _atm_key(content, path)


class _SkippedStorage:
    """A tensor storage whose bytes were left on disk (header reading)."""


class TensorHeader:
    """A tensor left on disk: only its shape is known."""

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.ndim = len(self.shape)


class _TorchHeaderUnpickler(_LazyUnpickler):
    """The lazy, restricted unpickler of :mod:`mindsight.io.containers` plus torch tensors:
    a tensor whose storage is large enough to be left on disk comes back as a
    :class:`TensorHeader` (its bytes are skipped, never read); small ones (``times``) are
    rebuilt through ``torch.load(weights_only=True)`` as numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return self._storage
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild
        return super().find_class(module, name)

    @staticmethod
    def _storage(data: Any) -> Any:
        if isinstance(data, _Blob):
            return _SkippedStorage()
        import torch

        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    @staticmethod
    def _rebuild(storage: Any, offset: int, size: Any, stride: Any, *rest: Any) -> Any:
        if isinstance(storage, _SkippedStorage):
            return TensorHeader(size)
        import torch

        return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, *rest).detach().numpy()


def read_atm_header(path: str | os.PathLike) -> tuple[tuple[int, ...], list[str], np.ndarray]:
    """(data shape, channel names, times) of an ATM pickle without reading its data.

    Numpy payloads stay memory-mapped, large torch tensors in a raw pickle are skipped
    (:class:`TensorHeader`), and ``torch.save`` zips are memory-mapped by ``torch.load``.
    """
    path = Path(path)
    kind = sniff(path)
    if kind == "zip":
        content = read_torch_dict(path)
    elif kind == "npy":
        content = read_dict(path)
    elif kind == "pickle":
        with open(path, "rb") as fh:
            content = _unpickle(fh, path, _TorchHeaderUnpickler)
        if not isinstance(content, dict):
            raise DataFormatError(f"{path}: expected a dict, found {type(content).__name__}")
    else:
        raise DataFormatError(f"{path}: not a pickle (container looks like {kind!r})")
    for k in ("ch_names", "times"):
        if k not in content:
            raise DataFormatError(f"{path}: missing key {k!r}; the file has {', '.join(map(repr, content))}")
    key = _atm_key(content, path)
    data = content[key]
    if not isinstance(data, (np.ndarray, TensorHeader)) or (
            isinstance(data, np.ndarray) and data.dtype.kind not in "fiu"):
        raise DataFormatError(f"{path}: {key!r} should be a numeric array, found {type(data).__name__}")
    return data.shape, [str(c) for c in content["ch_names"]], np.asarray(content["times"], float).ravel()


def _read_atm_array(path: Path, cache_dir: Any, use_cache: bool, bar: Any) -> tuple[np.ndarray, dict]:
    """(float32 array, {'ch_names', 'times', ...}) of an ATM pickle, numpy or torch inside."""
    kind = sniff(path)
    if kind not in ("npy", "pickle", "zip"):
        raise DataFormatError(f"{path}: not a pickle (container looks like {kind!r})")
    if kind != "zip":
        try:
            content = read_dict(path)
        except DataFormatError as exc:
            if "torch" not in str(exc):
                raise
        else:
            return load_float32(path, _atm_key(content, path), cache_dir, use_cache=use_cache,
                                required=("ch_names", "times"), on_rows=bar)
    key = "atm-torch-meg-data"
    hit = lookup_float32([path], key, cache_dir) if use_cache else None
    if hit is not None:
        return hit
    content, data_key = read_atm_content(path)
    array = np.asarray(content[data_key])
    if array.dtype.kind not in "fiu" or array.ndim < 1:
        raise DataFormatError(
            f"{path}: {data_key!r} should be a numeric array, found {array.dtype} {array.shape}")
    extras = {"ch_names": [str(c) for c in content["ch_names"]],
              "times": np.asarray(content["times"], dtype=np.float64).ravel().tolist()}
    return load_float32_rows([path], key, array.shape, lambda a, b: array[a:b], cache_dir,
                             use_cache=use_cache, extras=extras, on_rows=bar)


def atm_axes(path: Path, shape: tuple[int, ...], ch_names: Any, times: Any) -> tuple[list[str], np.ndarray]:
    """(channel names, sample times) of an ATM pickle whose ``meg_data`` has ``shape``, checked
    against it (times by :func:`epoch_times`); shared by the reader and the header reader."""
    if len(shape) != 5:
        raise DataFormatError(
            f"{path}: meg_data has shape {tuple(shape)}; expected 5 axes (concepts, images, "
            "repetitions, channels, times), e.g. (1654, 12, 1, 271, 201) or (200, 1, 12, 271, 201)"
        )
    names = [str(c) for c in ch_names]
    if len(names) != shape[3]:
        raise DataFormatError(f"{path}: 'ch_names' has {len(names)} names for {shape[3]} channels "
                              f"(meg_data shape {tuple(shape)})")
    return names, epoch_times(times, shape[4], path)


def check_atm_images(path: Path, partition: str, shape: tuple[int, ...], images: ImageSet) -> ImagePartition:
    """The image set's ``partition``, which must list as many images and concepts as the ATM
    pickle of ``shape`` (concepts × images × ...) holds."""
    n_c, n_i = shape[:2]
    part = images[partition]
    if len(part) != n_c * n_i or part.n_concepts != n_c:
        raise DataFormatError(
            f"{path}: {n_c * n_i} {partition} images ({n_c} concepts × {n_i}), but the "
            f"image set at {part.root} lists {len(part)} images of {part.n_concepts} concepts"
        )
    return part


def atm_large_refused(path: Path) -> DataFormatError:
    """The error for the large test set asked of an ATM pickle (which holds the small one)."""
    return DataFormatError(
        f"{path}: the large THINGS-MEG test set (2,400 images) exists only in the "
        "official derivative (preprocessed_P{n}-epo.fif + sample_attributes_P{n}.csv); "
        "ATM's pickles hold the small one (200 images × 12 repetitions)"
    )


def _read_atm(found: MegFile, subject: int, partition: str, images: ImageSet | None,
              cache_dir: Any, use_cache: bool) -> Recording:
    from mindsight.sensors import sensor_positions

    bar = progress_callback(f"caching {found.path.name} (sub-{subject:02d})", "cond")
    arr, extras = _read_atm_array(found.path, cache_dir, use_cache, bar)
    ch_names, times = atm_axes(found.path, arr.shape, extras["ch_names"], extras["times"])
    n_c, n_i, n_r, n_ch, n_t = arr.shape
    sensor_positions(ch_names)
    image = np.repeat(np.arange(n_c * n_i), n_r)
    repetition = np.tile(np.arange(n_r), n_c * n_i)
    concept = image // n_i
    concept_names = None
    if images is not None:
        part = check_atm_images(found.path, partition, arr.shape, images)
        concept, concept_names = part.concept[image], part.concept_names
    return Recording(
        data=arr.reshape(n_c * n_i * n_r, n_ch, n_t),
        ch_names=tuple(ch_names),
        sfreq=sfreq_from_times(times, found.path),
        times=times,
        trials=Trials.build(image, concept, subject, repetition=repetition),
        partition=partition,
        concept_names=concept_names,
        description={
            "dataset": DATASET, "layout": "atm", "source": str(found.path), "subject": subject,
            "test_set": "small" if partition == "test" else None,
            "images": str(images.root) if images is not None else None,
        },
    )


# -- public readers --------------------------------------------------------------------------------
def read_things_meg(
    root: str | os.PathLike,
    subject: int,
    partition: str = "train",
    images: str | os.PathLike | ImageSet | None = None,
    *,
    test_set: str = "small",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> Recording:
    """Read one subject's THINGS-MEG partition (``train`` or ``test``) in either layout.

    ``test_set`` picks the test partition of the official layout: ``'small'`` (200 images × 12
    repetitions) or ``'large'`` (2,400 images, one trial each); ATM's pickles hold only the
    small one. With ``images`` (an :class:`ImageSet` or, for ATM, a THINGS image folder) the
    image counts (and for the official layout the image order) are checked against it. The
    first read converts the selected trials to the float32 cache; later reads memory-map it.
    """
    if partition not in ("train", "test"):
        raise DataFormatError(f"partition must be 'train' or 'test', got {partition!r}")
    if test_set not in TEST_SETS:
        raise DataFormatError(f"test_set must be one of {TEST_SETS}, got {test_set!r}")
    root = Path(root)
    found = _locate(root, subject, partition)
    if images is not None and not isinstance(images, ImageSet):
        images = (read_image_set(images) if found.layout == "atm"
                  else things_meg_image_set(root, subject, images, test_set))
    if found.layout == "atm":
        if test_set == "large":
            raise atm_large_refused(found.path)
        return _read_atm(found, subject, partition, images, cache_dir, use_cache)
    return _read_official(found, subject, partition, test_set, images, cache_dir, use_cache)


def _image_root(images_root: Path, sample: str, concept: str) -> tuple[Path, str]:
    """(root, style) under which ``sample`` (an image_path) is found: 'path' = root/image_path,
    'concept' = root/<concept>/<file> (the THINGS database's object_images folder)."""
    if not images_root.is_dir():
        raise MissingFileError(f"{images_root}: image folder not found")
    name = PurePosixPath(sample).name
    for cand in [images_root, *sorted(p for p in images_root.iterdir() if p.is_dir())]:
        if (cand / sample).is_file():
            return cand, "path"
        if (cand / concept / name).is_file():
            return cand, "concept"
    raise MissingFileError(
        f"{images_root}: THINGS-MEG image {sample} not found (looked for {images_root / sample} "
        f"and {images_root / concept / name}); pass the folder holding images_meg/ and "
        "images_test_meg/, or the THINGS object_images folder"
    )


def things_meg_image_set(
    data_root: str | os.PathLike,
    subject: int | None,
    images_root: str | os.PathLike,
    test_set: str = "small",
    *,
    check_files: bool = True,
) -> ImageSet:
    """The images of the official layout's partitions, in the recordings' image order.

    Built from ``sample_attributes_P{subject}.csv`` (the first subject's when ``subject`` is
    None): ``train`` = the training images, ``test`` = the small (200) or large (2,400) test
    images. Files are ``image_path`` relative to ``images_root`` (a folder holding
    ``images_meg/`` and ``images_test_meg/``; the THINGS ``object_images`` folder, with concept
    folders, works too). A missing image file is a :class:`MissingFileError`.
    """
    data_root = Path(data_root)
    official = [f for f in find_things_meg(data_root, subject) if f.layout == "official"]
    if not official:
        raise MissingFileError(
            f"{data_root}: no official THINGS-MEG epochs file "
            f"(preprocessed_P{'{n}' if subject is None else subject}-epo.fif) found; "
            f"{_subject_hint(data_root)}"
        )
    found = min(official, key=lambda f: f.subject)
    df, table = attributes_table(found)
    sels = {p: select_partition(df, p, test_set, table) for p in ("train", "test")}
    first = sels["train"]
    root, style = _image_root(Path(images_root), first.image_paths[0],
                              first.concept_folders[first.image_concept[0]])
    parts = {}
    for p, sel in sels.items():
        files = tuple(
            path if style == "path" else f"{sel.concept_folders[c]}/{PurePosixPath(path).name}"
            for path, c in zip(sel.image_paths, sel.image_concept, strict=True)
        )
        if check_files:
            missing = [f for f in files if not (root / f).is_file()]
            if missing:
                raise MissingFileError(
                    f"{root}: {len(missing)} THINGS-MEG {p} image(s) listed in {table} are "
                    f"missing, e.g. {root / missing[0]}"
                )
        parts[p] = ImagePartition(name=p, root=root, files=files, concept=sel.image_concept,
                                  concept_folders=sel.concept_folders)
    return ImageSet(root=root, train=parts["train"], test=parts["test"], source=Path(table).name)


# -- writers -----------------------------------------------------------------------------------------
def write_things_meg_official(
    root: str | os.PathLike,
    subject: int,
    data: np.ndarray,
    ch_names: Sequence[str],
    sfreq: float,
    tmin: float,
    attributes: Any,
    events_image_nr: np.ndarray | None = None,
    *,
    include_catch_in_epochs: bool = True,
) -> dict[str, Path]:
    """Write a subject in the official layout under ``root`` (the BIDS root).

    ``data`` (n_trials, n_chans, n_times) and ``attributes`` (a DataFrame with one row per
    trial and the CSV's columns) describe every trial, catch trials included. Writes
    ``derivatives/preprocessed/preprocessed_P{subject}-epo.fif`` (MNE epochs of 'mag' channels,
    positions from :func:`mindsight.sensors.make_info`, the table as metadata, as
    ``step1_preprocessing.py`` does; MNE splits files over 2 GB) and
    ``sourcedata/sample_attributes_P{subject}.csv``. ``events_image_nr`` (default: the table's
    ``things_image_nr``, catch trials ``999999``) becomes ``events[:, 2]``. The real derivative
    keeps catch trials in the epochs; ``include_catch_in_epochs=False`` leaves them out of the
    .fif only. Both files are written atomically.
    """
    import mne

    from mindsight.sensors import make_info

    data = np.asarray(data)
    if data.ndim != 3 or data.shape[1] != len(ch_names):
        raise DataFormatError(
            f"data must be (n_trials, {len(ch_names)} channels, n_times), got shape {data.shape}"
        )
    attributes = _check_attributes(attributes.copy(), "attributes")
    if len(attributes) != len(data):
        raise DataFormatError(f"{len(attributes)} attribute rows for {len(data)} trials")
    if events_image_nr is None:
        import pandas as pd

        nr = pd.to_numeric(attributes["things_image_nr"], errors="coerce")
        events_image_nr = nr.fillna(CATCH_EVENT).to_numpy().astype(np.int64)
    events_image_nr = np.asarray(events_image_nr, dtype=np.int64)
    if events_image_nr.shape != (len(data),):
        raise DataFormatError(f"events_image_nr has shape {events_image_nr.shape}, expected ({len(data)},)")
    keep = (np.ones(len(data), bool) if include_catch_in_epochs
            else attributes["trial_type"].to_numpy() != "catch")
    n_times = data.shape[2]
    events = np.c_[np.arange(int(keep.sum())) * (n_times + 1), np.zeros(int(keep.sum()), np.int64),
                   events_image_nr[keep]]
    epochs = mne.EpochsArray(data if keep.all() else data[keep], make_info(list(ch_names), sfreq),
                             events=events, tmin=tmin, verbose="error",
                             metadata=attributes[keep].reset_index(drop=True))
    root = Path(root)
    target = root / "derivatives" / "preprocessed" / f"preprocessed_P{subject}-epo.fif"
    _save_epochs_atomically(epochs, target)
    csv = root / "sourcedata" / f"sample_attributes_P{subject}.csv"
    with atomic_path(csv) as tmp:
        attributes.to_csv(tmp, index=False)
    return {"epochs": target, "attributes": csv}


def _save_epochs_atomically(epochs: Any, target: Path) -> None:
    """Save into a temporary folder beside ``target``, then move the split parts and last the
    main file into place (a reader never sees a main file without its parts)."""
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    try:
        epochs.save(tmp_dir / target.name, overwrite=True, verbose="error")
        written = sorted(tmp_dir.iterdir(), key=lambda p: (p.name == target.name, p.name))
        stale = MegFile(target, "official", 0, None).parts[1:] if target.exists() else []
        for p in stale:
            if not (tmp_dir / p.name).exists():
                p.unlink()
        for p in written:
            with open(p, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(p, target.parent / p.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_things_meg_atm(
    root: str | os.PathLike,
    subject: int,
    train: np.ndarray,
    test: np.ndarray,
    ch_names: Sequence[str],
    times: np.ndarray,
) -> dict[str, Path]:
    """Write a subject in ATM's layout: ``sub-XX/preprocessed_meg_training.pkl`` with ``train``
    (concepts, images, 1, channels, times) and ``sub-XX/preprocessed_meg_zs_test.pkl`` with
    ``test`` (images, 1, repetitions, channels, times), each a pickled (protocol 4) dict
    ``{'meg_data', 'ch_names', 'times'}`` as ATM writes it; atomically."""
    times = np.asarray(times, dtype=np.float64)
    out = {}
    for name, arr in (("train", train), ("test", test)):
        arr = np.asarray(arr)
        if arr.ndim != 5 or arr.shape[3] != len(ch_names) or arr.shape[4] != len(times):
            raise DataFormatError(
                f"{name} must be (concepts, images, repetitions, {len(ch_names)} channels, "
                f"{len(times)} times), got shape {arr.shape}"
            )
        path = Path(root) / f"sub-{subject:02d}" / ATM_FILES[name]
        out[name] = write_pickle_dict(path, {"meg_data": arr, "ch_names": list(map(str, ch_names)),
                                             "times": times})
    return out


# -- the dataset's entry in the registry (mindsight.io.datasets) ---------------------------------
def large_unavailable(root: Any, what: str) -> DataFormatError:
    """The error for the large test set asked of data that do not have it (``what`` they are)."""
    return DataFormatError(
        f"test_set 'large' (the 2,400 exp images of THINGS-MEG's 200 test concepts) exists only "
        f"in the official THINGS-MEG derivative (preprocessed_P{{n}}-epo.fif + "
        f"sample_attributes_P{{n}}.csv); {root} holds {what}. Use test_set 'small'"
    )


def read_things_meg_header(root: str | os.PathLike, subject: int, partition: str,
                           images: ImageSet | None = None, *, test_set: str = "small",
                           cache_dir: Any = None) -> Recording:
    """One subject's partition as a zero-trial recording, from headers only: the epochs file's
    header and the CSV, joined and selected as the reader does (official), or the pickle with
    its large arrays skipped (ATM, :func:`read_atm_header`)."""
    from mindsight.io.headers import empty_recording

    found = _locate(Path(root), subject, partition)
    description = {"dataset": DATASET, "layout": found.layout, "source": str(found.path),
                   "subject": subject, "test_set": test_set if partition == "test" else None}
    if found.layout == "official":
        header, sel, _, table = official_selection(found, partition, test_set, images, cache_dir)
        return empty_recording(header["ch_names"], header["sfreq"], np.asarray(header["times"], float),
                               subject, partition, sel.concept_names, {**description, "attributes": table})
    if test_set == "large":
        raise atm_large_refused(found.path)
    shape, names, raw_times = read_atm_header(found.path)
    ch_names, times = atm_axes(found.path, shape, names, raw_times)
    concept_names = None
    if images is not None:
        concept_names = check_atm_images(found.path, partition, shape, images).concept_names
    return empty_recording(ch_names, sfreq_from_times(times, found.path), times, subject, partition,
                           concept_names, description)


def _describe(root: Path) -> list[Finding]:
    """THINGS-MEG files: the official epochs (header and trial table only) and ATM pickles."""
    found = find_things_meg(root)
    findings = []
    for layout, desc in LAYOUTS.items():
        files = sorted((f for f in found if f.layout == layout), key=lambda f: (f.subject, f.partition or ""))
        if files:
            rows = [r for f in files for r in (_official_rows(f) if layout == "official" else [_atm_row(f)])]
            findings.append(Finding("preprocessed", f"things-meg-{layout}", desc, root, rows))
    return findings


def _official_rows(f: MegFile) -> list[dict[str, Any]]:
    header = read_epochs_header(f.path)
    n_ch, n_t = len(header["ch_names"]), len(header["times"])
    base = {"subject": f.subject, "n_chans": n_ch, "n_times": n_t, "dtype": "float32",
            "file": str(f.path), **time_row(np.asarray(header["times"]), n_t, f.path)}
    try:
        df, table = attributes_table(f)
        join_epochs(df, np.asarray(header["events"]), table, str(f.path))
    except (DataFormatError, MissingFileError) as exc:
        return [{**base, "partition": "all", "shape": [len(header["events"]), n_ch, n_t],
                 "note": str(exc)}]
    rows = []
    for part, test_set, label in (("train", "small", "train"), ("test", "small", "test"),
                                  ("test", "large", "test (large)")):
        sel = select_partition(df, part, test_set, table)
        rows.append({**base, "partition": label, "shape": [len(sel.rows), n_ch, n_t],
                     "images": len(sel.image_nrs), "concepts": len(sel.concept_folders),
                     "attributes": table})
    return rows


def _atm_row(f: MegFile) -> dict[str, Any]:
    content, key = read_atm_content(f.path)
    arr = content[key]
    if not isinstance(arr, np.ndarray) or arr.ndim != 5:
        raise DataFormatError(f"{f.path}: meg_data should be 5-D, found {getattr(arr, 'shape', arr)}")
    n_c, n_i, n_r, n_ch, n_t = arr.shape
    return {"subject": f.subject, "partition": f.partition, "shape": list(arr.shape),
            "axes": "concept×image×repetition×channel×time", "n_chans": n_ch, "n_times": n_t,
            "images": n_c * n_i, "concepts": n_c, "dtype": str(arr.dtype), "file": str(f.path),
            **time_row(np.asarray(content["times"], dtype=float), n_t, f.path)}


class ThingsMEG(Dataset):
    """THINGS-MEG (Hebart et al. 2023): the official derivative and ATM's pickles."""

    name = DATASET
    description = "THINGS-MEG (Hebart et al. 2023), official derivative and ATM's pickles"
    layouts = LAYOUTS
    test_sets = TEST_SETS

    def find(self, root: Path, subject: int | None = None) -> list[MegFile]:
        return find_things_meg(root, subject)

    def read(self, root: Path, subject: int, partition: str, images: ImageSet | None = None, *,
             test_set: str = DEFAULT_TEST_SET, cache_dir: str | os.PathLike | None = None) -> Recording:
        return read_things_meg(root, subject, partition, images, test_set=test_set, cache_dir=cache_dir)

    def header(self, root: Path, subject: int, partition: str, images: ImageSet | None = None, *,
               test_set: str = DEFAULT_TEST_SET, cache_dir: str | os.PathLike | None = None) -> Recording:
        return read_things_meg_header(root, subject, partition, images, test_set=test_set,
                                      cache_dir=cache_dir)

    def images(self, data_root: Path, images_path: Path | None, *, test_set: str = DEFAULT_TEST_SET,
               subject: int | None = None) -> ImageSet:
        """From the subject's trial table (the first subject's when None) for the official
        derivative; the THINGS image folder for ATM's pickles."""
        official = any(f.layout == "official" for f in find_things_meg(data_root))
        if test_set == "large" and not official:
            raise large_unavailable(data_root, "only ATM's THINGS-MEG pickles")
        if images_path is None:
            raise MissingFileError(NO_IMAGES)
        if official:
            return things_meg_image_set(data_root, subject, images_path, test_set)
        return read_image_set(images_path)

    def describe(self, root: Path) -> list[Finding]:
        return _describe(root)
