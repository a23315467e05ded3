"""Synthetic decoding problems whose EEG is a known linear function of the image embeddings."""

from __future__ import annotations

import numpy as np

from mindsight.embed.features import FeatureTable
from mindsight.recording import Recording, Trials


def eeg_from_features(feats: np.ndarray, n_reps: int, n_chans: int, n_times: int,
                      noise: float, seed: int) -> np.ndarray:
    """(n_images, n_reps, n_chans, n_times): a fixed random linear map of each image's (z-scored)
    embedding, plus independent Gaussian noise per repetition."""
    rng = np.random.default_rng(seed)
    z = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    mixing = rng.normal(size=(z.shape[1], n_chans * n_times)) / np.sqrt(z.shape[1])
    clean = (z @ mixing).reshape(len(z), 1, n_chans, n_times)
    noisy = clean + noise * np.random.default_rng(seed + 1).normal(size=(len(z), n_reps, n_chans, n_times))
    return noisy.astype(np.float32)


def recording(eeg: np.ndarray, concept: np.ndarray, partition: str, concept_names) -> Recording:
    """A partition of subject 1 from ``eeg`` (images, repetitions, channels, times), 100 Hz."""
    n_img, n_reps, n_chans, n_times = eeg.shape
    return Recording(
        data=eeg.reshape(n_img * n_reps, n_chans, n_times),
        ch_names=tuple(f"E{i}" for i in range(n_chans)), sfreq=100.0, times=np.arange(n_times) / 100.0,
        trials=Trials.build(np.repeat(np.arange(n_img), n_reps), np.repeat(concept, n_reps), 1,
                            repetition=np.tile(np.arange(n_reps), n_img)),
        partition=partition, concept_names=tuple(concept_names),
    )


def problem(n_train_concepts: int = 60, exemplars: int = 4, n_test: int = 50, dim: int = 16,
            n_reps: int = 2, n_chans: int = 8, n_times: int = 64, noise: float = 0.5, seed: int = 0):
    """(train Recording, test Recording, train features, test features), disjoint concepts.

    Train and test EEG share one mixing matrix (the same "brain"), so a decoder fitted on the
    training concepts transfers to the unseen test concepts.
    """
    rng = np.random.default_rng(seed)
    n_tr = n_train_concepts * exemplars
    feats = rng.normal(size=(n_tr + n_test, dim)).astype(np.float32)
    eeg = eeg_from_features(feats, n_reps, n_chans, n_times, noise, seed)
    names = [f"concept{i}" for i in range(n_train_concepts + n_test)]
    out = []
    for part, rows, concept, cnames in (
        ("train", slice(0, n_tr), np.arange(n_tr) // exemplars, names[:n_train_concepts]),
        ("test", slice(n_tr, None), np.arange(n_test), names[n_train_concepts:]),
    ):
        out.append(recording(eeg[rows], concept, part, cnames))
    tr_f = FeatureTable(feats[:n_tr], tuple(f"tr{i}" for i in range(n_tr)), "synthetic", "image", "tr")
    te_f = FeatureTable(feats[n_tr:], tuple(f"te{i}" for i in range(n_test)), "synthetic", "image", "te")
    return out[0], out[1], tr_f, te_f


CH17 = "Pz P3 P7 O1 Oz O2 P4 P8 P1 P5 PO7 PO3 POz PO4 PO8 P6 P2".split()


def write_images(root, n_train_concepts: int = 8, exemplars: int = 3, n_test: int = 6,
                 size: int = 64, seed: int = 0):
    """An image set in folders (``training_images/00001_c001/c001_01b.jpg``, ``test_images/...``)
    of coloured shapes, distinct enough to get distinct embeddings."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)

    def save(path, k):
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = rng.integers(0, size // 2, 2)
            x1, y1 = np.array([x0, y0]) + rng.integers(8, size // 2, 2)
            shape = draw.ellipse if k % 2 else draw.rectangle
            shape([int(x0), int(y0), int(x1), int(y1)], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        img.save(path, quality=95)

    k = 0
    for c in range(n_train_concepts):
        name = f"train{c:03d}"
        for e in range(exemplars):
            save(root / "training_images" / f"{c + 1:05d}_{name}" / f"{name}_{e + 1:02d}b.jpg", k)
            k += 1
    for c in range(n_test):
        name = f"test{c:03d}"
        save(root / "test_images" / f"{c + 1:05d}_{name}" / f"{name}_01s.jpg", k)
        k += 1
    return root


def write_release(root, subjects=(1,), n_reps_train: int = 2, n_reps_test: int = 4,
                  noise: float = 0.3, model: str = "efficientnet-lite0", **image_kw):
    """Images plus EEG in the official layout (17 ch, 100 Hz) driven by the images' embeddings
    under ``model``; returns (eeg_root, image_root)."""
    from mindsight.embed.features import image_features
    from mindsight.io.images import read_image_set

    images = write_images(root / "images", **image_kw)
    imgset = read_image_set(images)
    tr = image_features(imgset["train"], model).features
    te = image_features(imgset["test"], model).features
    feats = np.concatenate([tr, te])
    times = np.round(np.arange(-20, 80) / 100.0, 3)
    for s in subjects:
        sub = root / "eeg" / f"sub-{s:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        for part, rows, reps in (("training", slice(0, len(tr)), n_reps_train),
                                 ("test", slice(len(tr), None), n_reps_test)):
            eeg = eeg_from_features(feats, reps, len(CH17), len(times), noise, seed=0)[rows]
            np.save(sub / f"preprocessed_eeg_{part}.npy", {
                "preprocessed_eeg_data": eeg.astype(np.float64), "ch_names": CH17, "times": times})
    return root / "eeg", images


def cached_release(tmp_path_factory, subjects=(1,), **kw):
    """``write_release`` into fresh temporary folders with its own feature cache (for module
    fixtures); returns (eeg_root, image_root, cache_dir)."""
    import pytest

    root = tmp_path_factory.mktemp("release")
    cache = tmp_path_factory.mktemp("release-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINDSIGHT_CACHE_DIR", str(cache))
        eeg, images = write_release(root, subjects=subjects, **kw)
    return eeg, images, cache


def write_things(root, image_root, extra: int = 3, size: int = 64, seed: int = 1):
    """A THINGS-database-like folder for the test concepts of the image set at ``image_root``:
    ``root/<concept>/<concept>_NNb.jpg`` (``extra`` new pictures per concept, NICE's centre
    images) plus a copy of the THINGS-EEG2 test image under its own file name, which the centre
    evaluation must leave out. Returns ``root``."""
    import shutil

    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for folder in sorted(p for p in (image_root / "test_images").iterdir() if p.is_dir()):
        concept = folder.name.split("_", 1)[1]
        out = root / concept
        out.mkdir(parents=True, exist_ok=True)
        for e in range(extra):
            img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            ImageDraw.Draw(img).ellipse([x0, y0, x0 + size // 3, y0 + size // 3],
                                        fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            img.save(out / f"{concept}_{e + 1:02d}b.jpg", quality=95)
        for test_image in folder.iterdir():
            shutil.copy(test_image, out / test_image.name)
    return root


def multimodal_problem(n_train_concepts: int = 60, exemplars: int = 4, n_test: int = 100,
                       latent: int = 16, dims: dict | None = None, n_reps: int = 2, n_chans: int = 8,
                       n_times: int = 64, noise: float = 1.0, seed: int = 0):
    """A CogCapPro-like problem: EEG is a linear function of latent factors z (per image: its
    concept's factors plus exemplar variation; test images are their concept's factors), and
    each modality's target a different linear map of z (text: of the concept's factors, so equal
    within a concept, rows per image as a text level's). The ``image`` modality has three
    levels (the target plus growing noise: low, medium, high blur), the others one; the last
    table is the fused target (the image map, sharp).

    Returns (train Recording, test Recording, train tables, test tables, ModalityLevels list);
    every table has rows scaled to about unit norm (CLIP-like).
    """
    from mindsight.train.multimodal import ModalityLevels

    dims = dims or {"image": 16, "edge": 12, "text": 8}
    rng = np.random.default_rng(seed)
    n_tr = n_train_concepts * exemplars
    concept_z = rng.normal(size=(n_train_concepts + n_test, latent))
    concept = np.r_[np.arange(n_tr) // exemplars, n_train_concepts + np.arange(n_test)]
    z = concept_z[concept] + np.r_[0.7 * rng.normal(size=(n_tr, latent)), np.zeros((n_test, latent))]
    eeg = eeg_from_features(z.astype(np.float32), n_reps, n_chans, n_times, noise, seed)
    maps = {m: rng.normal(size=(latent, d)) for m, d in dims.items()}

    def unit(a, ref):
        return ((a - ref.mean(0)) / ref.std(0) / np.sqrt(a.shape[1])).astype(np.float32)

    levels, mods = [], []
    for m in dims:
        clean = (concept_z[concept] if m == "text" else z) @ maps[m]
        if m == "image":
            names = ("syn@low", "syn@medium", "syn@high")
            levels += [unit(clean + s * rng.normal(size=clean.shape), clean) for s in (0.0, 0.5, 1.5)]
        else:
            names = (f"syn@{m}",)
            levels.append(unit(clean, clean))
        mods.append(ModalityLevels(m, "text" if m == "text" else "image", names))
    fused = z @ maps["image"]
    levels.append(unit(fused, fused))
    names = [f"concept{i}" for i in range(n_train_concepts + n_test)]
    recs, tables = [], []
    for part, rows, offset, cnames in (("train", slice(0, n_tr), 0, names[:n_train_concepts]),
                                       ("test", slice(n_tr, None), n_train_concepts,
                                        names[n_train_concepts:])):
        recs.append(recording(eeg[rows], concept[rows] - offset, part, cnames))
        keys = tuple(f"{part}{i}" for i in range(eeg[rows].shape[0]))
        tables.append([FeatureTable(lv[rows], keys, "syn", "image", part) for lv in levels])
    return recs[0], recs[1], tables[0], tables[1], mods
