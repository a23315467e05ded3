"""NICE's "centre" evaluation: rank concept centres instead of the test images.

NICE (Song et al., ICLR 2024; ``nice_stand.py``) scores each repetition-averaged test EEG
embedding against one *centre* per test concept: the mean of the L2-normalised image features
of every THINGS image of that concept except the THINGS-EEG2 test image itself
(``preprocessing/get_center_images.py`` copies ``THINGS/Images/<concept>/`` and deletes the
file named like the test image). The mean is not re-normalised (NICE's ``center_clip.npy`` has
row norms 0.74–0.98), and ranking is by the dot product of the unit EEG embedding with the
centres. This needs the THINGS database images, so mindsight offers it where the user has them::

    mindsight evaluate RUN_DIR --centres /data/THINGS/Images

Centre images are embedded through :func:`mindsight.embed.image_features`, so their features
are cached (keyed by the list of files) and an interrupted extraction resumes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mindsight.embed.features import image_features
from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.images import IMAGE_SUFFIXES, ImagePartition

TOP_K = (1, 3, 5)
_NUMBERED = re.compile(r"^\d+_(.+)$")


@dataclass(frozen=True, eq=False)
class Centres:
    """One centre per test concept (rows follow ``concept_folders``), and where each test image's
    concept sits among them (``image_concept[i]``: row of test image i's centre)."""

    features: np.ndarray  # (n_concepts, dim): means of unit image features
    concept_folders: tuple[str, ...]
    image_concept: np.ndarray
    n_images: int
    excluded: tuple[str, ...]  # centre-folder files left out because they are test images
    source: str
    renormalised: bool = False


def things_folder(test_folder: str) -> str:
    """The THINGS concept folder of a THINGS-EEG2 test folder: ``'00001_aircraft_carrier'`` →
    ``'aircraft_carrier'`` (the numeric prefix stripped, as NICE's ``[6:]``; an unnumbered
    folder keeps its name, as :func:`mindsight.io.images.concept_name` reads it)."""
    m = _NUMBERED.match(test_folder)
    return m.group(1) if m else test_folder


def _things_root(path: Path, wanted: str) -> Path:
    """``path`` itself, or its ``Images/`` sub-folder when ``path`` is the THINGS download's
    top folder (concept folders live in ``THINGS/Images/``)."""
    if not path.is_dir():
        raise MissingFileError(
            f"{path}: THINGS image folder not found; pass --centres the folder with one sub-folder "
            "per concept (THINGS/Images)"
        )
    if not (path / wanted).is_dir() and (path / "Images" / wanted).is_dir():
        return path / "Images"
    return path


def centre_images(things_dir: str | os.PathLike, test: ImagePartition) -> tuple[ImagePartition, tuple[str, ...]]:
    """Every THINGS image of each test concept except the test images themselves, as an
    :class:`ImagePartition` rooted at the THINGS folder (``concept`` indexes the test concepts),
    and the relative paths left out because they carry a test image's file name."""
    folders = [things_folder(f) for f in test.concept_folders]
    root = _things_root(Path(things_dir), folders[0])
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        raise MissingFileError(
            f"{root / missing[0]}: no THINGS folder for test concept {missing[0]!r}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; pass --centres the "
            "THINGS database folder with one sub-folder per concept (THINGS/Images)"
        )
    test_names: list[set[str]] = [set() for _ in folders]
    for rel, c in zip(test.files, test.concept, strict=True):
        test_names[int(c)].add(PurePosixPath(rel).name)
    files: list[str] = []
    concept: list[int] = []
    excluded: list[str] = []
    for i, folder in enumerate(folders):
        names = sorted(p.name for p in (root / folder).iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
        keep = [n for n in names if n not in test_names[i]]
        excluded += [f"{folder}/{n}" for n in names if n in test_names[i]]
        if not keep:
            raise DataFormatError(
                f"{root / folder}: no THINGS image of test concept {folder!r} besides the test "
                f"image(s) {', '.join(sorted(test_names[i]))}; a centre needs at least one other image"
            )
        files += [f"{folder}/{n}" for n in keep]
        concept += [i] * len(keep)
    listing = ImagePartition(name="centres", root=root, files=tuple(files),
                             concept=np.array(concept, dtype=np.int64), concept_folders=tuple(folders))
    return listing, tuple(excluded)


def concept_means(unit: np.ndarray, concept: np.ndarray, n_concepts: int,
                  renormalise: bool = False) -> np.ndarray:
    """Mean of the rows of ``unit`` per concept (NICE's centres: not re-normalised unless
    ``renormalise``)."""
    sums = np.zeros((n_concepts, unit.shape[1]), np.float64)
    np.add.at(sums, concept, unit)
    means = sums / np.bincount(concept, minlength=n_concepts)[:, None]
    if renormalise:
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return means.astype(np.float32)


def centre_features(things_dir: str | os.PathLike, test: ImagePartition, model: str, *,
                    cache_dir: Any = None, device: str = "cpu", renormalise: bool = False) -> Centres:
    """NICE's centres of the test concepts of ``test`` under image model ``model``, from the
    THINGS images in ``things_dir`` (features cached like any image set's)."""
    listing, excluded = centre_images(things_dir, test)
    table = image_features(listing, model, cache_dir=cache_dir, device=device)
    feats = concept_means(table.normalized(), listing.concept, listing.n_concepts, renormalise)
    return Centres(features=feats, concept_folders=listing.concept_folders,
                   image_concept=np.asarray(test.concept, dtype=np.int64), n_images=len(listing),
                   excluded=excluded, source=str(listing.root), renormalised=renormalise)


def centre_metrics(embeddings: torch.Tensor, images: torch.Tensor, centres: Centres) -> dict[str, Any]:
    """Top-1/3/5 of ranking the centres by dot(unit EEG embedding, centre), as NICE scores them;
    ``images[i]`` is the test image of embedding i (its concept's centre is the right answer)."""
    table = torch.from_numpy(centres.features).to(embeddings.device)
    scores = F.normalize(embeddings.float(), dim=1) @ table.T
    labels = torch.from_numpy(centres.image_concept).to(embeddings.device)[images.to(embeddings.device)]
    rank = (scores > scores.gather(1, labels[:, None])).sum(1)
    out: dict[str, Any] = {f"top{k}": float((rank < k).double().mean()) for k in TOP_K}
    out.update(n_way=len(centres.concept_folders), n_images=centres.n_images,
               n_excluded=len(centres.excluded), source=centres.source,
               renormalised=centres.renormalised)
    return out
