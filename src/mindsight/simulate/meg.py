"""The simulator's MEG mode: a THINGS-MEG-like session design on the 271 CTF sensors.

THINGS-MEG (Hebart et al. 2023) shows every *exp* image once (12 exemplars of each concept,
test concepts included) and the 200 *test* images once per session (12 sessions → 12
repetitions), plus catch trials. The simulator keeps that design at a smaller scale:

- exp trials: ``exemplars`` images of every training and test concept, each seen once;
- test trials: one extra image of each test concept, once per session, ``n_reps_test`` sessions;
- a few catch trials per session with an image-independent response only.

It writes the official derivative (``preprocessed_P{n}-epo.fif`` at 200 Hz, -0.1..1.3 s, with
``sample_attributes_P{n}.csv``) and ATM's per-subject pickles (0..1 s), through the writers of
:mod:`mindsight.io.things_meg`, so the reading code is the one real data go through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindsight._atomic import atomic_path
from mindsight.simulate import stimuli

SFREQ = 200.0
TIMES = np.round(np.arange(-20, 261) / SFREQ, 4)  # -0.1 … 1.3 s: the official derivative's epoch
KEEP = slice(20, 221)  # 0 … 1.0 s: the samples ATM keeps
EXEMPLAR_DIR = "test_concept_exemplars"  # exp images of the test concepts (the large test set)
CATCH_PER_SESSION = 2


@dataclass(frozen=True)
class MegDesign:
    """Every image of the simulation with its THINGS-style numbers, in one table.

    Rows are ordered train exp images, test exp images (large test set), test images (small
    test set). ``image_path`` is relative to the image root.
    """

    kind: np.ndarray  # 'train', 'large', 'test'
    image_path: list[str]
    concept_name: list[str]
    category_nr: np.ndarray  # 1-based over all concepts, sorted by name
    image_nr: np.ndarray  # 1-based, sorted by (concept, exemplar); the test image last
    exemplar_nr: np.ndarray  # 1-based within the concept
    test_image_nr: np.ndarray  # 1-based for test images, else 0 (absent)

    def rows(self, kind: str) -> np.ndarray:
        return np.flatnonzero(self.kind == kind)


def design(train: list[stimuli.Concept], test: list[stimuli.Concept], exemplars: int) -> MegDesign:
    """Numbering of all images; paths follow :func:`write_extra_images` and the image set."""
    names = sorted([c.name for c in train] + [c.name for c in test])
    cat = {n: i + 1 for i, n in enumerate(names)}
    per_concept = {n: (exemplars + (1 if n in {c.name for c in test} else 0)) for n in names}
    first_nr = dict(zip(names, np.cumsum([0] + [per_concept[n] for n in names[:-1]]) + 1, strict=True))
    kind, paths, cname, catnr, imgnr, exnr, testnr = [], [], [], [], [], [], []

    def add(k: str, concept: str, folder: str, root: str, e: int, suffix: str, tnr: int) -> None:
        kind.append(k)
        paths.append(f"{root}/{folder}/{concept}_{e + 1:02d}{suffix}.jpg")
        cname.append(concept)
        catnr.append(cat[concept])
        imgnr.append(first_nr[concept] + e)
        exnr.append(e + 1)
        testnr.append(tnr)

    for i, c in enumerate(train):
        for e in range(exemplars):
            add("train", c.name, f"{i + 1:05d}_{c.name}", "training_images", e, "b", 0)
    for i, c in enumerate(test):
        for e in range(exemplars):
            add("large", c.name, f"{i + 1:05d}_{c.name}", EXEMPLAR_DIR, e, "b", 0)
    for i, c in enumerate(test):
        # the image set names test images <concept>_01s.jpg; its THINGS number follows the exemplars
        kind.append("test")
        paths.append(f"test_images/{i + 1:05d}_{c.name}/{c.name}_01s.jpg")
        cname.append(c.name)
        catnr.append(cat[c.name])
        imgnr.append(first_nr[c.name] + exemplars)
        exnr.append(exemplars + 1)
        testnr.append(i + 1)
    return MegDesign(np.array(kind), paths, cname, np.array(catnr), np.array(imgnr),
                     np.array(exnr), np.array(testnr))


def write_extra_images(root: Path, test: list[stimuli.Concept], exemplars: int, size: int,
                       seed: int) -> None:
    """The test concepts' exp exemplars (not part of the THINGS-EEG2-style image set)."""
    for i, c in enumerate(test):
        for e in range(exemplars):
            path = root / EXEMPLAR_DIR / f"{i + 1:05d}_{c.name}" / f"{c.name}_{e + 1:02d}b.jpg"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    # exemplar e + 1: exemplar 0 is the test image itself (the plain picture)
                    stimuli.render(c, e + 1, size, seed).save(tmp, format="JPEG", quality=92)


def sessions(d: MegDesign, n_sessions: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per session, the shown design rows in presentation order (-1 = catch trial)."""
    exp = rng.permutation(np.r_[d.rows("train"), d.rows("large")])
    out = []
    for chunk in np.array_split(exp, n_sessions):
        rows = np.r_[chunk, d.rows("test"), np.full(CATCH_PER_SESSION, -1)]
        out.append(rng.permutation(rows))
    return out


def attributes(d: MegDesign, order: list[np.ndarray]):
    """``sample_attributes_P{n}.csv`` as a DataFrame, one row per trial in presentation order."""
    import pandas as pd

    recs = []
    for s, rows in enumerate(order):
        for r in rows:
            if r < 0:
                recs.append({"trial_type": "catch", "session_nr": s + 1, "things_category_nr": 0,
                             "things_image_nr": 999999, "things_exemplar_nr": 0, "test_image_nr": 0,
                             "image_path": "catch_images/catch.jpg"})
                continue
            recs.append({"trial_type": "test" if d.kind[r] == "test" else "exp",
                         "session_nr": s + 1, "things_category_nr": int(d.category_nr[r]),
                         "things_image_nr": int(d.image_nr[r]),
                         "things_exemplar_nr": int(d.exemplar_nr[r]),
                         "test_image_nr": int(d.test_image_nr[r]), "image_path": d.image_path[r]})
    return pd.DataFrame.from_records(recs)
