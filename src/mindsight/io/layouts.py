"""Recognise what is on disk under a path (for ``mindsight info``), reading headers only.

Nothing here converts or loads EEG data: arrays are opened lazily, so describing a directory of
8 GB files takes a moment, not minutes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.containers import read_dict, read_npy
from mindsight.io.images import METADATA_FILE, PARTITION_DIRS, read_image_set
from mindsight.io.things_eeg2 import (
    EEG_KEY,
    EXEMPLARS_PER_TRAIN_CONCEPT,
    LAYOUTS,
    RAW_KEYS,
    PreprocessedFile,
    find_preprocessed,
    find_raw_sessions,
    walk_files,
)
from mindsight.io.things_meg import LAYOUTS as MEG_LAYOUTS
from mindsight.io.things_meg import (
    MegFile,
    attributes_table,
    find_things_meg,
    join_epochs,
    read_atm_content,
    read_epochs_header,
    select_partition,
)
from mindsight.io.timeaxis import epoch_times


@dataclass
class Finding:
    """One recognised dataset (or part of one) and a table describing it."""

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


def _time_row(times: np.ndarray, n_times: int, source: Any) -> dict[str, Any]:
    """Sampling rate and time range of a file's data, or, when its ``times`` disagree with the
    data (:func:`epoch_times`), a ``note`` with the reason: ``info`` still lists the file and
    its shape, and the readers refuse it with the same message."""
    try:
        times = epoch_times(times, n_times, source)
    except DataFormatError as exc:
        return {"note": str(exc)}
    sfreq = 1.0 / float(np.mean(np.diff(times))) if len(times) > 1 else float("nan")
    return {"sfreq": round(sfreq, 3), "tmin": round(float(times[0]), 4), "tmax": round(float(times[-1]), 4)}


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
            row.update(_time_row(meta["times"], n_t, f.meta_path))
    else:
        content = read_dict(f.path, required=(EEG_KEY, "ch_names", "times"))
        arr = content[EEG_KEY]
        if not isinstance(arr, np.ndarray) or arr.ndim != 4:
            raise DataFormatError(f"{f.path}: {EEG_KEY!r} should be 4-D, found {getattr(arr, 'shape', arr)}")
        n_cond, n_rep, n_ch, n_t = arr.shape
        row.update(shape=list(arr.shape), axes="condition×repetition×channel×time",
                   n_chans=n_ch, n_times=n_t, images=n_cond, dtype=str(arr.dtype),
                   **_time_row(content["times"], n_t, f.path))
    if row.get("images") is not None:
        row["concepts"] = (
            row["images"] // EXEMPLARS_PER_TRAIN_CONCEPT if f.partition == "train" else row["images"]
        )
    return row


def _describe_meg(root: Path) -> list[Finding]:
    """THINGS-MEG files: the official epochs (header and trial table only) and ATM pickles."""
    found = find_things_meg(root)
    findings = []
    for layout, desc in MEG_LAYOUTS.items():
        files = sorted((f for f in found if f.layout == layout), key=lambda f: (f.subject, f.partition or ""))
        if files:
            rows = [r for f in files for r in (_meg_official_rows(f) if layout == "official" else [_meg_atm_row(f)])]
            findings.append(Finding("preprocessed", f"things-meg-{layout}", desc, root, rows))
    return findings


def _meg_official_rows(f: MegFile) -> list[dict[str, Any]]:
    header = read_epochs_header(f.path)
    n_ch, n_t = len(header["ch_names"]), len(header["times"])
    base = {"subject": f.subject, "n_chans": n_ch, "n_times": n_t, "dtype": "float32",
            "file": str(f.path), **_time_row(np.asarray(header["times"]), n_t, f.path)}
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


def _meg_atm_row(f: MegFile) -> dict[str, Any]:
    content, key = read_atm_content(f.path)
    arr = content[key]
    if not isinstance(arr, np.ndarray) or arr.ndim != 5:
        raise DataFormatError(f"{f.path}: meg_data should be 5-D, found {getattr(arr, 'shape', arr)}")
    n_c, n_i, n_r, n_ch, n_t = arr.shape
    return {"subject": f.subject, "partition": f.partition, "shape": list(arr.shape),
            "axes": "concept×image×repetition×channel×time", "n_chans": n_ch, "n_times": n_t,
            "images": n_c * n_i, "concepts": n_c, "dtype": str(arr.dtype), "file": str(f.path),
            **_time_row(np.asarray(content["times"], dtype=float), n_t, f.path)}


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


def _describe_images(root: Path) -> list[Finding]:
    candidates = {p.parent for p in walk_files(root) if p.name == METADATA_FILE}
    if root.is_dir():
        candidates |= {d for d in [root, *root.iterdir()] if d.is_dir()
                       and all((d / sub).is_dir() for sub in PARTITION_DIRS.values())}
    findings = []
    for cand in sorted(candidates):
        images = read_image_set(cand, check_files=False)
        rows = []
        for part in ("train", "test"):
            p = images[part]
            per = np.bincount(p.concept)
            rows.append({"partition": part, "images": len(p), "concepts": p.n_concepts,
                         "exemplars_per_concept": int(per.min()) if per.min() == per.max() else f"{per.min()}-{per.max()}",
                         "first": p.files[0]})
        overlap = images.overlapping_concepts()
        desc = f"THINGS image set (from {images.source})" + (
            f"; WARNING: {len(overlap)} concepts in both partitions" if overlap else
            "; training and test concepts disjoint")
        findings.append(Finding("images", "things-images", desc, cand, rows))
    return findings


def _describe_features(root: Path) -> list[Finding]:
    from mindsight.embed.anchors import recognise  # name matching only; no torch import

    rows = []
    for p in walk_files(root):
        a = recognise(p)
        if a is None:
            continue
        row = {"source": a.source, "model": a.model, "partition": a.partition, "file": str(p)}
        if a.source == "nice":
            row["shape"] = list(read_npy(p).shape)
        rows.append(row)
    if not rows:
        return []
    return [Finding("features", "anchor-features", "image/text feature files of ATM, NICE or "
                    "things-eeg2-dataset (import with `mindsight import-features`)", root, rows)]


def describe(path: str | os.PathLike) -> list[Finding]:
    """Everything mindsight recognises under ``path``; an error if it recognises nothing."""
    root = Path(path)
    if not root.exists():
        raise MissingFileError(f"{root}: no such file or directory")
    findings: list[Finding] = []
    pre = find_preprocessed(root)
    for layout in LAYOUTS:
        files = [f for f in pre if f.layout == layout]
        if files:
            rows = [_describe_preprocessed(f) for f in sorted(files, key=lambda f: (f.subject, f.partition))]
            findings.append(Finding("preprocessed", layout, LAYOUTS[layout], root, rows))
    findings += _describe_meg(root)
    findings += _describe_raw(root)
    findings += _describe_images(root)
    findings += _describe_features(root)
    if not findings:
        raise DataFormatError(
            f"{root}: no recognised layout. mindsight reads: "
            + "; ".join([*LAYOUTS.values(), *MEG_LAYOUTS.values()])
            + "; the THINGS-EEG2 raw release; THINGS image sets; ATM/NICE/things-eeg2-dataset features"
        )
    return findings
