"""Write small files in the public layouts exactly as the public scripts do.

Same keys, axis order, dtypes and containers as the real releases (../shared/specs/datasets.md),
only the leading dimensions shrunk. These writers deliberately use plain ``np.save`` /
``pickle.dump`` (not mindsight's own writers), so the readers are tested against the formats,
not against themselves.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CH17 = "Pz P3 P7 O1 Oz O2 P4 P8 P1 P5 PO7 PO3 POz PO4 PO8 P6 P2".split()
CH63 = (
    "Fp1 Fp2 AF7 AF3 AFz AF4 AF8 F7 F5 F3 F1 F2 F4 F6 F8 FT9 FT7 FC5 FC3 FC1 FCz FC2 FC4 FC6 FT8 "
    "FT10 T7 C5 C3 C1 Cz C2 C4 C6 T8 TP9 TP7 CP5 CP3 CP1 CPz CP2 CP4 CP6 TP8 TP10 P7 P5 P3 P1 Pz "
    "P2 P4 P6 P8 PO7 PO3 POz PO4 PO8 O1 Oz O2"
).split()
TRAIN_CONCEPTS = ["aardvark", "abacus", "accordion", "acorn", "air_conditioner", "airplane"]
TEST_CONCEPTS = ["aircraft_carrier", "antelope", "backscratcher"]


def write_image_set(root: Path, n_train_concepts: int = 3, exemplars: int = 10,
                    n_test: int = 3, size: int = 32, metadata: bool = True) -> Path:
    """``training_images/00001_aardvark/aardvark_01b.jpg`` ... plus ``image_metadata.npy``."""
    rng = np.random.default_rng(0)
    train_files, train_concepts, test_files, test_concepts = [], [], [], []
    for i in range(n_train_concepts):
        name = TRAIN_CONCEPTS[i]
        folder = f"{i + 1:05d}_{name}"
        for e in range(exemplars):
            fname = f"{name}_{e + 1:02d}b.jpg"
            _save_image(root / "training_images" / folder / fname, rng, size)
            train_files.append(fname)
            train_concepts.append(folder)
    for i in range(n_test):
        name = TEST_CONCEPTS[i]
        folder = f"{i + 1:05d}_{name}"
        fname = f"{name}_06s.jpg"
        _save_image(root / "test_images" / folder / fname, rng, size)
        test_files.append(fname)
        test_concepts.append(folder)
    if metadata:
        np.save(root / "image_metadata.npy", {
            "train_img_files": train_files,
            "train_img_concepts": train_concepts,
            "train_img_concepts_THINGS": train_concepts,
            "test_img_files": test_files,
            "test_img_concepts": test_concepts,
            "test_img_concepts_THINGS": test_concepts,
        })
    return root


def _save_image(path: Path, rng: np.random.Generator, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=90)


def eeg_array(n_cond: int, n_rep: int, n_ch: int, n_t: int, seed: int = 0) -> np.ndarray:
    """float64 (conditions, repetitions, channels, times) where each value encodes its position."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_cond, n_rep, n_ch, n_t))


def write_official(root: Path, subject: int = 1, n_train: int = 30, n_test: int = 3,
                   n_rep_train: int = 4, n_rep_test: int = 5, seed: int = 0) -> Path:
    """``sub-XX/preprocessed_eeg_{training,test}.npy`` as ``np.save(dict)``: 17 ch, 100 Hz."""
    sub = root / f"sub-{subject:02d}"
    sub.mkdir(parents=True, exist_ok=True)
    times = np.round(np.arange(-20, 80) / 100.0, 3)
    for part, (n, r) in {"training": (n_train, n_rep_train), "test": (n_test, n_rep_test)}.items():
        np.save(sub / f"preprocessed_eeg_{part}.npy", {
            "preprocessed_eeg_data": eeg_array(n, r, 17, 100, seed + (part == "test")),
            "ch_names": list(CH17),
            "times": times,
        })
    return root


def write_nice_atm(root: Path, subject: int = 1, n_train: int = 30, n_test: int = 3,
                   n_rep_train: int = 4, n_rep_test: int = 5, n_times: int = 250,
                   seed: int = 0) -> Path:
    """``sub-XX/preprocessed_eeg_{training,test}.npy`` as a raw pickle: 63 ch, 250 Hz, 300 times."""
    sub = root / f"sub-{subject:02d}"
    sub.mkdir(parents=True, exist_ok=True)
    times = np.round(np.arange(-50, 250) / 250.0, 4)  # 300 values, -0.2..0.996 s
    for part, (n, r) in {"training": (n_train, n_rep_train), "test": (n_test, n_rep_test)}.items():
        with open(sub / f"preprocessed_eeg_{part}.npy", "wb") as fh:
            pickle.dump({
                "preprocessed_eeg_data": eeg_array(n, r, 63, n_times, seed + (part == "test")),
                "ch_names": list(CH63),
                "times": times,
            }, fh, protocol=4)
    return root


def write_package_layout(project: Path, subject: int = 1, n_train: int = 30, n_test: int = 3,
                         n_ses: int = 4, seed: int = 0) -> Path:
    """things-eeg2-dataset: ``processed/sub-XX/`` per-session float32 arrays + meta JSON."""
    sub = project / "processed" / f"sub-{subject:02d}"
    sub.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_times = 301
    times = np.round(np.arange(-50, 251) / 250.0, 4)
    # training: each session shows half of the conditions (so each condition is in two of the
    # four sessions), 2 repetitions each — as in THINGS-EEG2
    half = n_train // 2
    perm = rng.permutation(n_train) + 1
    train_conds = np.stack([np.sort(np.r_[perm, perm][s * half: s * half + half]) for s in range(n_ses)])
    test_conds = np.tile(np.arange(1, n_test + 1), (n_ses, 1))
    for part, conds, reps in (("training", train_conds, 2), ("test", test_conds, 3)):
        data = rng.normal(size=(n_ses, conds.shape[1], reps, 63, n_times)).astype(np.float32)
        np.save(sub / f"preprocessed_eeg_{part}_sub-{subject:02d}.npy", data)
        np.save(sub / f"img_conditions_{part}_sub-{subject:02d}.npy", conds)
    (sub / f"meta_sub-{subject:02d}.json").write_text(
        json.dumps({"ch_names": list(CH63), "times": times.tolist()})
    )
    return project


RAW_CH = ["Fp1", "Fz", "Cz", "C3", "Pz", "P3", "PO7", "O1", "Oz", "O2"]
PEAK_S = 0.1


def write_raw_release(root: Path, subject: int = 1, n_sessions: int = 2, n_train: int = 6,
                      n_test: int = 3, reps_train: int = 2, reps_test: int = 3,
                      sfreq: float = 1000.0, seed: int = 0) -> dict:
    """``raw_data/sub-XX/ses-0Y/raw_eeg_{training,test}.npy`` with known events.

    Each stimulus of condition c adds ``amp[c]`` × a Gaussian bump peaking 100 ms after onset
    on Oz (and half of it on O1); target trials (code 99999) add a huge bump that must never
    reach the output. The first training condition gets one extra repetition per session, so
    repetition selection is exercised. Returns the amplitudes for the checks.
    """
    rng = np.random.default_rng(seed)
    amps = {"train": 1e-6 * (1 + np.arange(n_train)), "test": 1e-6 * (2 + 3 * np.arange(n_test))}
    mixing = rng.normal(size=(len(RAW_CH), len(RAW_CH))) * 0.3 + np.eye(len(RAW_CH))
    for s in range(n_sessions):
        for part, fname in (("train", "training"), ("test", "test")):
            n, reps = (n_train, reps_train) if part == "train" else (n_test, reps_test)
            codes = [c + 1 for c in range(n) for _ in range(reps)]
            if part == "train":
                codes.append(1)
            codes += [99999] * 3
            codes = list(rng.permutation(codes))
            gap = int(1.5 * sfreq)
            n_samples = gap * (len(codes) + 2)
            eeg = (rng.normal(size=(len(RAW_CH), n_samples)) * 0.2e-6)
            eeg = mixing @ eeg
            stim = np.zeros(n_samples)
            t = np.arange(int(0.6 * sfreq)) / sfreq
            bump = np.exp(-0.5 * ((t - PEAK_S) / 0.02) ** 2)
            for k, code in enumerate(codes):
                onset = gap * (k + 1)
                stim[onset] = code
                amp = 1e-3 if code == 99999 else amps[part][code - 1]
                eeg[RAW_CH.index("Oz"), onset: onset + len(t)] += amp * bump
                eeg[RAW_CH.index("O1"), onset: onset + len(t)] += 0.5 * amp * bump
            ses = root / "raw_data" / f"sub-{subject:02d}" / f"ses-{s + 1:02d}"
            ses.mkdir(parents=True, exist_ok=True)
            np.save(ses / f"raw_eeg_{fname}.npy", {
                "raw_eeg_data": np.vstack([eeg, stim]),
                "ch_names": RAW_CH + ["stim"],
                "ch_types": ["eeg"] * len(RAW_CH) + ["stim"],
                "sfreq": sfreq,
                "highpass": 0.01,
                "lowpass": 100,
            })
    return amps
