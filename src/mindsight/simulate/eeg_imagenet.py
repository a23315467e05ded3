"""The simulator's EEG-ImageNet layout: simulated subjects viewing the training concepts' pictures,
written as an EEG-ImageNet release (read by :mod:`mindsight.io.eeg_imagenet`)::

    EEG-ImageNet/EEG-ImageNet.pth   torch.save of {'dataset': [...], 'labels', 'images'}: 62 channels
                                    (the release's names and order), 1000 Hz, 500 samples from image
                                    onset, in µV, one trial per image per subject
    imagenet/<wnid>/<wnid>_<k>.JPEG the pictures, in ImageNet's training layout

Every training concept of the simulation is a class with a wnid-like label (``n00000001``, …,
in the concepts' sorted order); the first half are ``coarse``, the rest ``fine``. As in the
release, each subject sees every class in a block of its images, classes and images in an order
of the subject's own. The responses come from the simulation's brains and features (the same
forward model, noise and perceptual front-end as the THINGS-EEG2 layouts), on a lead field of the
release's 62 electrodes; the Neuroscan cap's cerebellar electrodes CB1/CB2, which have no 10-05
position, are placed at I1/I2 (below O1/O2). The simulator's native unit is the µV (its raw
THINGS-EEG2 release stores volts = µV × 1e-6), so the values are written as they are.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mindsight._atomic import atomic_path
from mindsight.io.eeg_imagenet import CH_NAMES_62, SFREQ, write_eeg_imagenet, zero_shot_test_classes
from mindsight.output import progress_bar

FOLDER, FILE, IMAGES = "EEG-ImageNet", "EEG-ImageNet.pth", "imagenet"
N_SAMPLES = 500  # 0.5 s at 1000 Hz, as the release
TIMES = np.arange(N_SAMPLES) / SFREQ
LEAD_NAMES = tuple({"CB1": "I1", "CB2": "I2"}.get(c, c) for c in CH_NAMES_62)  # positions for the lead field


def wnid(i: int) -> str:
    """The label of class ``i`` (0-based): ``n00000001``, ``n00000002``, …"""
    return f"n{i + 1:08d}"


def design(concept: np.ndarray) -> tuple[list[str], list[str], list[str]]:
    """(class labels, their granularities, each image's file name) for the training images of
    ``concept`` (per image, its concept index; images of a concept consecutive)."""
    n = int(concept.max()) + 1
    labels = [wnid(i) for i in range(n)]
    kinds = ["coarse" if i < n // 2 else "fine" for i in range(n)]
    first = np.searchsorted(concept, concept)  # index of each concept's first image
    names = [f"{labels[c]}_{k + 1}.JPEG" for c, k in zip(concept, np.arange(len(concept)) - first, strict=True)]
    return labels, kinds, names


def simulate_eeg_imagenet(out: Path, cfg: Any, imgset: Any, levels: dict[str, np.ndarray],
                          seen: dict[str, np.ndarray] | None, embeddings: dict[str, np.ndarray],
                          cache_dir: Any) -> dict[str, Any]:
    """Write the layout under ``out`` from the training images of ``imgset`` (rows 0 … n − 1 of
    ``levels`` / ``seen``, the simulation's features) and return its metadata: per-subject
    ideal-observer ceilings of single-trial retrieval among the zero-shot test images."""
    from mindsight.io.datasets import read_images
    from mindsight.simulate.dataset import (
        _prime_feature_cache,
        drawn_trials,
        ideal_observer,
        level_templates,
        noise_model,
        seen_at,
        trials,
    )
    from mindsight.simulate.forward import evoked, make_brain
    from mindsight.simulate.head import lead_field

    part = imgset["train"]
    labels, kinds, names = design(part.concept)
    files = [f"{n.split('_')[0]}/{n}" for n in names]
    for src, rel in zip(part.paths, files, strict=True):  # the pictures, byte for byte
        dst = out / IMAGES / rel
        if not dst.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
    lead = replace(lead_field(LEAD_NAMES), ch_names=tuple(CH_NAMES_62))
    held = set(zero_shot_test_classes(labels, kinds))
    test_rows = np.array([j for j, c in enumerate(part.concept) if labels[c] in held])
    n_levels = len(next(iter(seen.values()))) if seen is not None else 1
    eeg, subject_of, shown_all, subjects_meta = [], [], [], {}
    for s in progress_bar(cfg.subjects, desc="simulating EEG-ImageNet subjects", unit="subject"):
        rng = np.random.default_rng([cfg.seed, 5000 + s])
        brain = make_brain(lead, s, {k: v.shape[1] for k, v in levels.items()}, cfg.seed, cfg.shared)
        noise = noise_model(lead, s, cfg, SFREQ)
        shown = np.concatenate([rng.permutation(np.flatnonzero(part.concept == c))
                                for c in rng.permutation(len(labels))])  # class blocks, own order
        if seen is not None:  # one acuity level drawn per trial
            x = drawn_trials(seen_at(brain, seen, shown, TIMES), len(shown), n_levels, noise, 1, rng)[0][:, 0]
            templates = level_templates(brain, seen, test_rows, TIMES)
        else:
            x = trials(evoked(brain, {k: v[shown] for k, v in levels.items()}, TIMES), noise, 1, rng)[:, 0]
            templates = evoked(brain, {k: v[test_rows] for k, v in levels.items()}, TIMES)
        eeg.append(x)
        subject_of += [s] * len(shown)
        shown_all.append(shown)
        position = np.argsort(shown)  # trial of each image
        subjects_meta[str(s)] = ideal_observer(templates, x[position[test_rows]][:, None], noise, cfg, rng,
                                               times=TIMES, keep=slice(None))
    shown_all = np.concatenate(shown_all)
    path = write_eeg_imagenet(out / FOLDER / FILE, np.concatenate(eeg).astype(np.float32),
                              [labels[part.concept[j]] for j in shown_all],
                              [kinds[part.concept[j]] for j in shown_all], subject_of,
                              [names[j] for j in shown_all])
    rows = files + [f"(not in EEG-ImageNet)/{f}" for f in imgset["test"].files]  # rows of `embeddings`
    _prime_feature_cache([read_images(path, out / IMAGES)], rows, embeddings, cache_dir)
    return {"file": str(path), "images": str(out / IMAGES), "classes": len(labels),
            "n_way": len(test_rows), "subjects": subjects_meta}
