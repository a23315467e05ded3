"""The run's offline preprocessing, applied to one stimulus at a time as its samples arrive.

A run was trained on epochs that a pipeline cut from raw recordings: channels picked, a window
``tmin..tmax`` around each onset, baseline ``(None, 0)``, resampling, the samples the release
keeps, MVNN whitening with a covariance of *training* statistics, then the run's own channel
pick and crop. :class:`OnlinePipeline` is that pipeline for a live stream: given the raw
samples from ``onset + tmin`` on, it returns the array the run's encoder reads, computed as the
offline pipeline computes it (MNE's baseline; the FFT resampling ``mne.Epochs.resample`` does,
batched over channels), so an epoch cut online equals the one cut offline from the same
recording (``tests/test_stream.py`` checks it against ``mne.Epochs``).

Where the pipeline's settings come from (:func:`pipeline_for_run`):

1. ``sub-XX/preprocessing.json`` beside the run's data (written by ``mindsight preprocess``),
   with the MVNN covariances of its sessions in ``sub-XX/mvnn.npz``;
2. otherwise the published pipeline of the data's layout (``official``, ``nice-atm``); the
   MVNN whitener must then come from a raw *training* recording of the subject
   (``mvnn=PATH``: its epochs' noise covariance, as the published scripts compute it), or be
   switched off (``mvnn='none'``, for data that were never whitened, like the simulator's);
3. or an explicit ``preprocess=`` variant name.

Live data are never used to estimate statistics: a whitener fitted on the live session would
differ from the one the training data saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.errors import ConfigError, DataFormatError, MissingFileError, UnknownNameError

__all__ = ["OnlinePipeline", "offline_epochs", "pipeline_for_run", "resampled_times"]


@dataclass
class OnlinePipeline:
    """Raw samples ``onset + tmin .. onset + tmax`` (the run's channels, in its order) → the
    run's epoch (n_chans, n_times).

    ``keep`` indexes the resampled epoch's samples that the run's data hold (the release's
    ``keep_from`` crop and the run's ``data.tmin/tmax``); ``whitener`` is the MVNN matrix of
    training statistics (None: none) over ``ch_names``, after which ``picks`` selects the rows
    the run reads (its ``data.channels``; None: all); ``scale`` multiplies the result (a unit factor, see
    :mod:`mindsight.stream.units`).
    """

    ch_names: tuple[str, ...]
    source_sfreq: float
    tmin: float
    tmax: float
    sfreq: float
    keep: np.ndarray
    whitener: np.ndarray | None = None
    picks: np.ndarray | None = None
    baseline: tuple[float | None, float | None] | None = (None, 0.0)
    scale: float = 1.0
    origin: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keep = np.asarray(self.keep, dtype=np.int64)
        self.ch_names = tuple(self.ch_names)
        self.start = int(round(self.tmin * self.source_sfreq))  # as mne.Epochs rounds them
        self.stop = int(round(self.tmax * self.source_sfreq))
        self.raw_times = np.arange(self.start, self.stop + 1) / self.source_sfreq
        self.times = resampled_times(self.tmin, self.tmax, self.source_sfreq, self.sfreq)[self.keep]
        if self.whitener is not None and self.whitener.shape != (len(self.ch_names),) * 2:
            raise DataFormatError(f"MVNN whitener of shape {self.whitener.shape} for "
                                  f"{len(self.ch_names)} channels")
        if self.baseline is not None:
            lo, hi = self.baseline
            inside = ((self.raw_times >= (-np.inf if lo is None else lo) - 1e-12)
                      & (self.raw_times <= (np.inf if hi is None else hi) + 1e-12))
            self._base = np.flatnonzero(inside)
            if len(self._base) == 0:
                raise ConfigError(f"baseline {self.baseline} holds no sample of the window "
                                  f"{self.tmin}..{self.tmax} s")

    @property
    def n_raw(self) -> int:
        """Raw samples per epoch (both ends included, as mne.Epochs)."""
        return self.stop - self.start + 1

    @property
    def out_names(self) -> tuple[str, ...]:
        """The channels of the output, in the run's order."""
        return self.ch_names if self.picks is None else tuple(self.ch_names[i] for i in self.picks)

    @property
    def n_chans(self) -> int:
        return len(self.ch_names)

    @property
    def n_times(self) -> int:
        return len(self.keep)

    def end_offset(self, window: float | None = None) -> int:
        """Samples after the onset until the last one a ``window`` (s after onset; None: the
        whole epoch) needs."""
        if window is None or window >= self.tmax:
            return self.stop
        return min(self.stop, int(np.floor(window * self.source_sfreq + 1e-9)))

    def _resample(self, x: np.ndarray) -> np.ndarray:
        """The whole epoch's resampling: what ``mne.Epochs.resample`` computes (FFT method,
        ``npad='auto'``, boxcar window, ``pad='edge'``), on all channels at once. MNE loops over
        channels (9 ms for 63 × 1201 samples here, most of the latency budget); one batched FFT
        takes under 1 ms. ``tests/test_stream.py`` checks it against MNE."""
        if self.sfreq == self.source_sfreq:
            return x
        from scipy import fft

        n = x.shape[-1]
        ratio = self.sfreq / self.source_sfreq
        final_len = int(round(n * ratio))
        min_add = min(n // 8, 100) * 2  # MNE's 'auto' pad: up to a power of two
        npad, extra = divmod(2 ** int(np.ceil(np.log2(n + min_add))) - n, 2)
        pads = (npad, npad + extra)
        padded = np.pad(x, ((0, 0), pads), mode="edge")
        orig_len = padded.shape[-1]
        new_len = max(int(round(ratio * orig_len)), 1)
        cut = int(round(ratio * pads[0]))
        spectrum = fft.rfft(padded, axis=-1)
        use_len = min(new_len, orig_len)
        if use_len % 2 == 0:
            spectrum[:, use_len // 2] *= 2 if new_len < orig_len else 0.5
        spectrum *= new_len / orig_len  # the boxcar window, scaled as MNE scales it
        y = fft.irfft(spectrum, new_len, axis=-1)
        return y[:, cut : cut + final_len]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """The epoch from raw samples (n_chans, n_raw) or, for a growing window, from the first
        samples only: then the kept samples up to the last raw one are returned (n_chans, n ≤
        n_times), the rest being in the future."""
        raw = np.asarray(raw, dtype=np.float64)
        n = raw.shape[-1]
        if raw.shape[0] != self.n_chans or n > self.n_raw:
            raise DataFormatError(f"online epoch of shape {raw.shape}; expected ({self.n_chans}, "
                                  f"≤ {self.n_raw})")
        if self.baseline is not None:
            base = self._base[self._base < n]
            if len(base) == 0:
                raise DataFormatError("a growing window must reach past the baseline")
            raw = raw - raw[:, base].mean(axis=1, keepdims=True)
        x = self._resample(raw)
        if n < self.n_raw:  # growing window: the kept samples whose time has passed
            last = self.raw_times[n - 1]
            t = np.arange(x.shape[-1]) / self.sfreq + self.raw_times[0]
            keep = self.keep[self.keep < x.shape[-1]]
            keep = keep[t[keep] <= last + 1e-9]
        else:
            keep = self.keep
        x = x[:, keep]
        if self.whitener is not None:
            x = self.whitener @ x
        if self.picks is not None:
            x = x[self.picks]
        return x * self.scale if self.scale != 1.0 else x

    def describe(self) -> dict[str, Any]:
        return {"channels": len(self.ch_names), "source_sfreq": self.source_sfreq, "tmin": self.tmin,
                "tmax": self.tmax, "sfreq": self.sfreq, "n_times": self.n_times,
                "times": [float(self.times[0]), float(self.times[-1])],
                "baseline": self.baseline, "whitener": self.whitener is not None, "scale": self.scale,
                **self.origin}


def resampled_times(tmin: float, tmax: float, source_sfreq: float, sfreq: float) -> np.ndarray:
    """The times of an epoch cut at ``source_sfreq`` from ``tmin`` to ``tmax`` (both ends
    included, rounded to samples as mne.Epochs does) once resampled to ``sfreq``."""
    start, stop = int(round(tmin * source_sfreq)), int(round(tmax * source_sfreq))
    n = stop - start + 1
    n_out = n if sfreq == source_sfreq else int(round(n * sfreq / source_sfreq))
    return np.arange(n_out) / sfreq + start / source_sfreq


# -- settings from the run's data ----------------------------------------------------------------
def _preprocessing_json(eeg_root: Path, subject: int) -> Path | None:
    for base in (eeg_root, eeg_root / "preprocessed_data"):
        p = base / f"sub-{subject:02d}" / "preprocessing.json"
        if p.is_file():
            return p
    return None


def _is_simulated(eeg_root: Path) -> bool:
    return any((p / "simulation.json").is_file() for p in (eeg_root, *eeg_root.parents[:2]))


def _mvnn_from_saved(path: Path, ch_names: tuple[str, ...], session: str | None) -> np.ndarray:
    from mindsight.preprocess.mvnn import inverse_sqrt
    from mindsight.preprocess.pipeline import load_mvnn

    covs, names = load_mvnn(path)
    if tuple(names) != tuple(ch_names):
        raise DataFormatError(f"{path}: MVNN channels {names} differ from the data's {list(ch_names)}")
    if session is not None:
        if session not in covs:
            raise UnknownNameError(f"{path}: no session {session!r}; sessions: {', '.join(covs)}")
        return inverse_sqrt(covs[session])
    return inverse_sqrt(np.mean(list(covs.values()), axis=0))  # a new session: their mean


def _mvnn_from_raw(path: Path, cfg: Any, ch_names: tuple[str, ...]) -> np.ndarray:
    """The whitener of a raw *training* recording, computed as the published pipeline does."""
    from mindsight.preprocess.mvnn import inverse_sqrt, noise_covariance
    from mindsight.preprocess.pipeline import epoch_session

    cfg = cfg.with_overrides(channels=tuple(ch_names))  # the repetitions preprocessing kept
    epoched = epoch_session(Path(path), "train", cfg)
    if cfg.keep_from is not None:
        epoched.data = epoched.data[..., epoched.times >= cfg.keep_from - 1e-9]
    return inverse_sqrt(noise_covariance(epoched.data, cfg.mvnn or "epochs"))


def pipeline_for_run(run: Any, subject: int, source_sfreq: float, *, preprocess: str | None = None,
                     mvnn: str | None = None, mvnn_session: str | None = None) -> OnlinePipeline:
    """The online pipeline that reproduces the preprocessing of ``run``'s data for ``subject``.

    ``preprocess``: a variant name (``official``, ``nice-atm``) or a ``preprocessing.json``
    (default: the one saved beside the data, else the variant of the data's layout).
    ``mvnn``: ``'none'``, a raw training recording to compute the whitener from, or None (the
    saved covariances; the mean over sessions unless ``mvnn_session``).
    """
    from mindsight.io import read_header
    from mindsight.preprocess.pipeline import MVNN_FILE, VARIANTS, PreprocessConfig

    cfg_data = run.config.data
    root = Path(cfg_data.eeg)
    header = read_header(root, subject, "test", test_set=cfg_data.test_set, cache_dir=run.cache_dir)
    release_names = header.ch_names
    if cfg_data.channels:
        header = header.pick(cfg_data.channels)
    if cfg_data.tmin is not None or cfg_data.tmax is not None:
        header = header.crop(cfg_data.tmin, cfg_data.tmax)
    layout = header.description.get("layout")

    saved = None
    if preprocess is None:
        saved = _preprocessing_json(root, subject)
        if saved is not None:
            preprocess = str(saved)
        elif layout in VARIANTS:
            preprocess = layout
        else:
            raise ConfigError(f"{root}: no online pipeline is known for {header.description.get('dataset')} "
                              f"data of layout {layout!r} (no sub-{subject:02d}/preprocessing.json); pass "
                              f"--preprocess official|nice-atm|PATH/preprocessing.json")
    if preprocess in VARIANTS:
        cfg, origin = VARIANTS[preprocess], {"preprocessing": preprocess}
    else:
        path = Path(preprocess)
        if not path.is_file():
            raise MissingFileError(f"{path}: no such preprocessing.json; pass a variant name "
                                   f"({', '.join(VARIANTS)}) or a file written by `mindsight preprocess`")
        raw_cfg = dict(json.loads(path.read_text())["config"])
        raw_cfg["channels"] = (raw_cfg["channels"] if isinstance(raw_cfg["channels"], str)
                               else tuple(raw_cfg["channels"]))
        raw_cfg["mvnn_partitions"] = tuple(raw_cfg.get("mvnn_partitions", ()))
        cfg, origin = PreprocessConfig(**raw_cfg), {"preprocessing": str(path)}

    # which resampled samples the run reads: match its time axis
    t_out = resampled_times(cfg.tmin, cfg.tmax, source_sfreq, cfg.sfreq)
    keep = np.array([int(np.argmin(np.abs(t_out - t))) for t in header.times])
    if abs(cfg.sfreq - header.sfreq) > 1e-6 or np.abs(t_out[keep] - header.times).max() > 0.5 / cfg.sfreq:
        raise DataFormatError(
            f"{header.description.get('source')}: the run's data ({header.sfreq:g} Hz, "
            f"{header.times[0]:.3f}..{header.times[-1]:.3f} s) are not what preprocessing {origin['preprocessing']} "
            f"makes ({cfg.sfreq:g} Hz, {t_out[0]:.3f}..{t_out[-1]:.3f} s); pass --preprocess with the one that made them")

    whitener = None
    if mvnn == "none":
        origin["mvnn"] = "none (as requested)"
    elif mvnn is not None:
        whitener = _mvnn_from_raw(Path(mvnn), cfg, release_names)
        origin["mvnn"] = f"{cfg.mvnn or 'epochs'} covariance of the training recording {mvnn}"
    elif cfg.mvnn and saved is not None and (saved.parent / MVNN_FILE).is_file():
        whitener = _mvnn_from_saved(saved.parent / MVNN_FILE, release_names, mvnn_session)
        origin["mvnn"] = f"{saved.parent / MVNN_FILE} ({mvnn_session or 'mean over sessions'})"
    elif cfg.mvnn and _is_simulated(root):
        origin["mvnn"] = "none (simulated data are not whitened)"
    elif cfg.mvnn:
        raise MissingFileError(
            f"{root}: the run's data were MVNN-whitened ({cfg.mvnn}) but no whitener was saved with "
            f"them (sub-{subject:02d}/{MVNN_FILE}); pass --mvnn RAW_TRAINING_FILE to compute it from a "
            "training recording of this subject, re-run `mindsight preprocess`, or --mvnn none")
    if whitener is None:  # read the run's channels only
        return OnlinePipeline(tuple(header.ch_names), source_sfreq, cfg.tmin, cfg.tmax, cfg.sfreq,
                              keep, origin=origin)
    # MVNN mixes all the channels it was fitted on; the run may read a subset of them after it
    picks = np.array([release_names.index(c) for c in header.ch_names])
    return OnlinePipeline(tuple(release_names), source_sfreq, cfg.tmin, cfg.tmax, cfg.sfreq, keep,
                          whitener, picks=None if len(picks) == len(release_names) and
                          (picks == np.arange(len(picks))).all() else picks, origin=origin)


def offline_epochs(raw: Any, events: np.ndarray, pipeline: OnlinePipeline) -> np.ndarray:
    """The same epochs cut offline by MNE from a whole recording (``mne.io.Raw`` and an MNE
    events array): ``mne.Epochs`` with the pipeline's window and baseline, ``resample``, the
    kept samples, the whitener and scale. The reference an online epoch must equal."""
    import mne

    ep = mne.Epochs(raw, events, tmin=pipeline.tmin, tmax=pipeline.tmax, baseline=pipeline.baseline,
                    picks=list(pipeline.ch_names), preload=True, event_repeated="drop", verbose="error")
    if pipeline.sfreq != pipeline.source_sfreq:
        ep.resample(pipeline.sfreq, verbose="error")
    x = ep.get_data(copy=True)[..., pipeline.keep]
    if pipeline.whitener is not None:
        x = np.einsum("ij,njt->nit", pipeline.whitener, x)
    if pipeline.picks is not None:
        x = x[:, pipeline.picks]
    return x * pipeline.scale
