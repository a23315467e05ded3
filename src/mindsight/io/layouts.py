"""Recognise what is on disk under a path (for ``mindsight info``), reading headers only.

Nothing here converts or loads EEG data: arrays are opened lazily, so describing a directory of
8 GB files takes a moment, not minutes. Each registered dataset describes its own files
(:meth:`mindsight.io.datasets.Dataset.describe`); image sets and feature files are described here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.containers import read_npy
from mindsight.io.datasets import Finding, readers, walk_files
from mindsight.io.images import METADATA_FILE, PARTITION_DIRS, read_image_set

__all__ = ["Finding", "describe"]


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
    datasets = readers()
    findings: list[Finding] = [f for ds in datasets for f in ds.describe(root)]
    findings += _describe_images(root)
    findings += _describe_features(root)
    if not findings:
        raise DataFormatError(
            f"{root}: no recognised layout. mindsight reads: "
            + "; ".join(d for ds in datasets for d in ds.layouts.values())
            + "; the THINGS-EEG2 raw release; THINGS image sets; ATM/NICE/things-eeg2-dataset features"
        )
    return findings
