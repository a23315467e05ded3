"""THINGS-EEG2 raw release → preprocessed release, reproducing the published pipelines with MNE.

Per session and partition: MNE ``RawArray`` → events from the ``stim`` row → drop target trials
(code 99999) → pick channels → epoch with baseline (None, 0) → resample → keep a fixed number of
repetitions per image condition (drawn with the seed). Per session: MVNN with the noise covariance
of the chosen partitions. Then the sessions are merged (repetitions concatenated and shuffled)
and written in the release's own container, so any tool that reads the release reads the output.

Variants (:data:`VARIANTS`):

``official``  17 occipital/parietal channels, -0.2..0.8 s, 100 Hz, MVNN over time points
              (``mvnn='time'``: a covariance across repetitions at each time point, averaged over
              time, as the official script's ``--mvnn_dim`` default) from both partitions,
              NPY-dict container (Gifford et al. 2022).
``nice-atm``  63 channels front to back, -0.2..1.0 s, 250 Hz, data kept from 0 s (250 samples;
              ``times`` keeps all 300 values as the release does), MVNN over epochs
              (``mvnn='epochs'``: a covariance across time points of each repetition) from the
              training partition only, raw pickle container (NICE, ATM).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mindsight._atomic import atomic_path, write_json
from mindsight.errors import DataFormatError, MissingFileError, UnknownNameError
from mindsight.io.containers import read_dict, write_npy_dict, write_pickle_dict
from mindsight.io.things_eeg2 import CH_NAMES_63, FILE_PARTITION, RAW_KEYS, find_raw_sessions
from mindsight.output import logger
from mindsight.preprocess.mvnn import inverse_sqrt, noise_covariance, whiten

TARGET_CODE = 99999
MVNN_FILE = "mvnn.npz"  # per subject: each session's noise covariance (``cov_<session>``), ``ch_names``
POSTERIOR = "posterior"  # the official pick: channels whose name starts with O or P


@dataclass(frozen=True)
class PreprocessConfig:
    """Every choice of the pipeline; :data:`VARIANTS` holds the published ones."""

    variant: str
    channels: str | tuple[str, ...]
    tmin: float
    tmax: float
    sfreq: float
    keep_from: float | None  # crop the data to t >= keep_from after resampling (times kept whole)
    reps_per_session: dict[str, int] = field(default_factory=lambda: {"train": 2, "test": 20})
    mvnn: str | None = "time"  # 'time' (the official default), 'epochs', or None to skip whitening
    mvnn_partitions: tuple[str, ...] = ("train", "test")
    container: str = "npy"
    seed: int = 20200220
    epoch_chunk: int = 1024  # events epoched at a time (bounds memory; results are identical)

    def with_overrides(self, **kwargs: Any) -> PreprocessConfig:
        return replace(self, **kwargs)


VARIANTS = {
    "official": PreprocessConfig(
        variant="official", channels=POSTERIOR, tmin=-0.2, tmax=0.8, sfreq=100.0, keep_from=None,
        mvnn="time", mvnn_partitions=("train", "test"), container="npy",
    ),
    "nice-atm": PreprocessConfig(
        variant="nice-atm", channels=tuple(CH_NAMES_63), tmin=-0.2, tmax=1.0, sfreq=250.0,
        keep_from=0.0, mvnn="epochs", mvnn_partitions=("train",), container="pickle",
    ),
}


@dataclass
class _Epoched:
    data: np.ndarray  # (conditions, repetitions, channels, times), float64
    conditions: np.ndarray  # 1-based condition codes
    ch_names: list[str]
    times: np.ndarray  # before keep_from
    n_targets: int
    n_lost_at_edges: int


def _pick_channels(names: list[str], channels: str | tuple[str, ...], source: Path) -> list[str]:
    eeg = [n for n in names if n != "stim"]
    if channels == POSTERIOR:
        picked = [n for n in eeg if re.match(r"^O *|^P *", n)]
    else:
        missing = [c for c in channels if c not in eeg]
        if missing:
            raise DataFormatError(f"{source}: channel(s) {missing} missing from 'ch_names'")
        picked = list(channels)
    if not picked:
        raise DataFormatError(f"{source}: no channel matches the selection {channels!r}")
    return picked


def epoch_session(path: Path, partition: str, cfg: PreprocessConfig) -> _Epoched:
    """Epoch one raw session file and keep ``cfg.reps_per_session[partition]`` per condition."""
    import mne
    from sklearn.utils import shuffle

    raw_dict = read_dict(path, required=RAW_KEYS)
    names = [str(c) for c in raw_dict["ch_names"]]
    x = raw_dict["raw_eeg_data"]
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] != len(names):
        raise DataFormatError(
            f"{path}: 'raw_eeg_data' has shape {getattr(x, 'shape', None)}; expected "
            f"({len(names)} channels incl. stim, n_samples)"
        )
    if "stim" not in names:
        raise DataFormatError(f"{path}: no 'stim' channel in 'ch_names'; events cannot be found")
    sfreq = float(np.asarray(raw_dict["sfreq"]).item())
    picked = _pick_channels(names, cfg.channels, path)
    rows = [names.index(c) for c in picked] + [names.index("stim")]
    data = np.asarray(x[rows], dtype=np.float64)
    if not np.isfinite(data).all():
        ch, t = np.argwhere(~np.isfinite(data))[0]
        raise DataFormatError(f"{path}: NaN/Inf in channel {(picked + ['stim'])[ch]} at sample {t}")
    info = mne.create_info(picked + ["stim"], sfreq, ["eeg"] * len(picked) + ["stim"])
    raw = mne.io.RawArray(data, info, verbose="error")
    events = mne.find_events(raw, stim_channel="stim", verbose="error")
    n_targets = int((events[:, 2] == TARGET_CODE).sum())
    events = events[events[:, 2] != TARGET_CODE]
    if len(events) == 0:
        raise DataFormatError(f"{path}: no stimulus events in the 'stim' row")

    chunks, kept = [], []
    for start in range(0, len(events), cfg.epoch_chunk):
        ep = mne.Epochs(
            raw, events[start : start + cfg.epoch_chunk], tmin=cfg.tmin, tmax=cfg.tmax,
            baseline=(None, 0), picks="eeg", preload=True, verbose="error",
        )
        if len(ep) == 0:
            continue
        if cfg.sfreq != sfreq:
            ep.resample(cfg.sfreq, verbose="error")
        chunks.append(ep.get_data(copy=False))
        kept.append(ep.events[:, 2])
        times = ep.times
    if not chunks:
        raise DataFormatError(f"{path}: every epoch reaches past the recording's edges")
    epochs, codes = np.concatenate(chunks), np.concatenate(kept)

    max_rep = cfg.reps_per_session[partition]
    conditions = np.unique(codes)
    out = np.empty((len(conditions), max_rep, *epochs.shape[1:]))
    for i, cond in enumerate(conditions):
        idx = np.flatnonzero(codes == cond)
        if len(idx) < max_rep:
            raise DataFormatError(
                f"{path}: condition {cond} has {len(idx)} repetition(s), fewer than the "
                f"{max_rep} kept per session for {partition}; lower reps_per_session"
            )
        out[i] = epochs[shuffle(idx, random_state=cfg.seed, n_samples=max_rep)]
    return _Epoched(out, conditions, picked, times, n_targets, len(events) - len(codes))


def _merge_sessions(parts: list[_Epoched], seed: int, source: str) -> np.ndarray:
    """Concatenate each condition's repetitions over sessions, then shuffle repetitions."""
    from sklearn.utils import shuffle

    all_conditions = np.unique(np.concatenate([p.conditions for p in parts]))
    expected = np.arange(1, len(all_conditions) + 1)
    if not np.array_equal(all_conditions, expected):
        raise DataFormatError(f"{source}: image conditions are not 1..N across sessions")
    per_cond: list[list[np.ndarray]] = [[] for _ in all_conditions]
    for p in parts:
        for i, cond in enumerate(p.conditions):
            per_cond[cond - 1].append(p.data[i])
    n_reps = {sum(len(a) for a in arrs) for arrs in per_cond}
    if len(n_reps) != 1:
        raise DataFormatError(
            f"{source}: conditions have different repetition counts across sessions ({sorted(n_reps)})"
        )
    merged = np.stack([np.concatenate(arrs) for arrs in per_cond])
    return merged[:, shuffle(np.arange(merged.shape[1]), random_state=seed)]


def save_mvnn(path: Path, covariances: dict[str, np.ndarray], ch_names: list[str]) -> None:
    """Write each session's MVNN noise covariance (atomically), so the whitener the training
    data saw can be applied again later (a live stream of the same subject)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, ch_names=np.asarray(ch_names, dtype=str),
                     **{f"cov_{ses}": cov for ses, cov in covariances.items()})


def load_mvnn(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """(covariance per session, channel names) written by :func:`save_mvnn`."""
    if not Path(path).is_file():
        raise MissingFileError(f"{path} is missing: no MVNN statistics were saved with these data "
                               "(preprocessed before they were, or by another tool)")
    with np.load(path) as z:
        covs = {k[4:]: np.asarray(z[k]) for k in z.files if k.startswith("cov_")}
        return covs, [str(c) for c in z["ch_names"]]


def preprocess_subject(
    raw_root: str | os.PathLike,
    subject: int,
    out_dir: str | os.PathLike,
    config: PreprocessConfig | str = "official",
    *,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Preprocess one subject of the raw release into ``out_dir/sub-XX/``.

    Returns the written partition files. Existing complete outputs are kept unless
    ``overwrite`` (so an interrupted multi-subject run resumes where it stopped). Each step is
    noted through the ``mindsight`` logger (INFO).
    """
    import mne

    if isinstance(config, str) and config not in VARIANTS:
        raise UnknownNameError(f"unknown variant {config!r}; available: {', '.join(VARIANTS)}")
    cfg = VARIANTS[config] if isinstance(config, str) else config
    sessions = find_raw_sessions(raw_root, subject).get(subject)
    if not sessions or not sessions["train"] or not sessions["test"]:
        raise MissingFileError(
            f"{raw_root}: no raw sessions for sub-{subject:02d} (expected "
            f"raw_data/sub-{subject:02d}/ses-0Y/raw_eeg_{{training,test}}.npy)"
        )
    ses_names = {p: [f.parent.name for f in files] for p, files in sessions.items()}
    if ses_names["train"] != ses_names["test"]:
        raise MissingFileError(
            f"{raw_root}: sub-{subject:02d} sessions differ between partitions: {ses_names}"
        )
    target = Path(out_dir) / f"sub-{subject:02d}"
    outputs = {p: target / f"preprocessed_eeg_{FILE_PARTITION[p]}.npy" for p in FILE_PARTITION}
    if not overwrite and all(f.is_file() for f in outputs.values()):
        logger.info("sub-%02d: already preprocessed in %s, skipping (use --overwrite)", subject, target)
        return outputs

    merged: dict[str, list[_Epoched]] = {"train": [], "test": []}
    report: dict[str, Any] = {"sessions": []}
    covariances: dict[str, np.ndarray] = {}
    for s, ses in enumerate(ses_names["train"]):
        epoched = {p: epoch_session(sessions[p][s], p, cfg) for p in FILE_PARTITION}
        if epoched["train"].ch_names != epoched["test"].ch_names:
            raise DataFormatError(f"{ses}: channel names differ between training and test files")
        if cfg.keep_from is not None:  # e.times stays whole: the release saves pre-crop times
            for e in epoched.values():
                e.data = e.data[..., e.times >= cfg.keep_from - 1e-9]
        if cfg.mvnn:
            cov = np.mean([noise_covariance(epoched[p].data, cfg.mvnn) for p in cfg.mvnn_partitions], axis=0)
            covariances[ses] = cov
            w = inverse_sqrt(cov)
            for e in epoched.values():
                e.data = whiten(e.data, w)
        for p, e in epoched.items():
            merged[p].append(e)
            report["sessions"].append({
                "session": ses, "partition": p, "conditions": len(e.conditions),
                "target_trials_dropped": e.n_targets, "epochs_lost_at_edges": e.n_lost_at_edges,
            })
        logger.info("sub-%02d %s: epoched%s", subject, ses, f", MVNN ({cfg.mvnn})" if cfg.mvnn else "")

    first = merged["train"][0]
    write = write_npy_dict if cfg.container == "npy" else write_pickle_dict
    for p, parts in merged.items():
        data = _merge_sessions(parts, cfg.seed, f"sub-{subject:02d} {p}")
        write(outputs[p], {
            "preprocessed_eeg_data": data,
            "ch_names": list(first.ch_names),
            "times": np.asarray(first.times),
        })
        logger.info("sub-%02d: wrote %s %s", subject, outputs[p], data.shape)
    if covariances:  # what a live stream whitens with (mindsight.stream): training statistics
        save_mvnn(target / MVNN_FILE, covariances, first.ch_names)
    cfg_dict = asdict(cfg)
    write_json(target / "preprocessing.json", {
        "config": cfg_dict, "raw_root": str(raw_root), "subject": subject,
        "mne_version": mne.__version__, **report,
    })
    return outputs
