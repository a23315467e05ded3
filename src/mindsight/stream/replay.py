"""``mindsight replay FILE``: a recording streamed live on LSL, through mne-lsl's ``PlayerLSL``.

So everything live can be tried without an amplifier. Readers are dispatched by file type
(:data:`READERS`): the THINGS-EEG2 raw release (``raw_eeg_{training,test}.npy``, also what the
simulator writes with its ``raw`` layout) and anything ``mne.io.read_raw`` opens (FIF, EDF,
BrainVision, EEGLAB…). A folder is searched for the first raw test recording. Stimulus codes
travel twice, as on most lab set-ups: on the stim channel of the data stream, and as string
markers on a second stream ``<name>-annotations`` (from the recording's annotations, made from
the stim channel when it has none).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.output import logger

__all__ = ["READERS", "Replay", "read_raw"]

STIM = "stim"


def _read_things_eeg2(path: Path) -> Any:
    """The raw release's NPY dict (``raw_eeg_data`` with a ``stim`` row, ``ch_names``, ``sfreq``)
    as an ``mne.io.RawArray`` in volts."""
    import mne

    from mindsight.io.containers import read_dict
    from mindsight.io.things_eeg2 import RAW_KEYS

    d = read_dict(path, required=RAW_KEYS)
    names = [str(c) for c in d["ch_names"]]
    x = np.asarray(d["raw_eeg_data"], dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(names):
        raise DataFormatError(f"{path}: 'raw_eeg_data' has shape {x.shape}; expected ({len(names)}, n_samples)")
    types = [STIM if n == STIM else "eeg" for n in names]
    info = mne.create_info(names, float(np.asarray(d["sfreq"]).item()), types)
    return mne.io.RawArray(x, info, verbose="error")


def _read_mne(path: Path) -> Any:
    import mne

    return mne.io.read_raw(path, preload=True, verbose="error")


# suffix -> reader; anything else goes to mne.io.read_raw
READERS: dict[str, Callable[[Path], Any]] = {".npy": _read_things_eeg2}


def _find_recording(folder: Path) -> Path:
    from mindsight.io.things_eeg2 import find_raw_sessions

    sessions = find_raw_sessions(folder)
    for subject in sorted(sessions):
        if sessions[subject]["test"]:
            return sessions[subject]["test"][0]
    raise MissingFileError(f"{folder}: no raw recording (raw_data/sub-XX/ses-0Y/raw_eeg_test.npy) to "
                           "replay; pass a file (THINGS-EEG2 raw .npy, FIF or any MNE-readable file)")


def read_raw(path: str | Path, *, start: float = 0.0, duration: float | None = None) -> Any:
    """The recording at ``path`` as an ``mne.io.Raw`` with its markers as annotations
    (descriptions are the integer codes), cropped to ``start .. start + duration`` seconds."""
    import mne

    path = Path(path)
    if path.is_dir():
        path = _find_recording(path)
        logger.info("replaying %s", path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such recording")
    raw = READERS.get(path.suffix.lower(), _read_mne)(path)
    if len(raw.annotations) == 0:
        stim = [c for c, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t == "stim"]
        if stim:
            events = mne.find_events(raw, stim_channel=stim[0], consecutive=True, verbose="error")
            onsets = (events[:, 0] - raw.first_samp) / raw.info["sfreq"]
            raw.set_annotations(mne.Annotations(onsets, np.zeros(len(events)),
                                                [str(c) for c in events[:, 2]]))
    tmax = None if duration is None else min(start + duration, raw.times[-1])
    if start or tmax is not None:
        raw.crop(start, tmax)
    return raw


class Replay:
    """A recording played as LSL streams ``name`` (data) and ``name-annotations`` (markers)."""

    def __init__(self, path: str | Path, *, name: str = "mindsight-replay", chunk_size: int = 10,
                 start: float = 0.0, duration: float | None = None, repeat: int | None = 1) -> None:
        self.raw = read_raw(path, start=start, duration=duration)
        extra = len(self.raw.times) % chunk_size
        if extra:  # PlayerLSL stamps a short last chunk as if it were whole: a false gap
            self.raw.crop(0, self.raw.times[-1 - extra], include_tmax=True)
        self.path, self.name, self.chunk_size = Path(path), name, chunk_size
        self.repeat = np.inf if repeat is None else repeat
        self.player = None

    @property
    def duration(self) -> float:
        return float(self.raw.times[-1])

    def start(self) -> Replay:
        from mne_lsl.player import PlayerLSL

        # the recording is cut to whole chunks (see __init__); PlayerLSL then warns of an empty last one
        warnings.filterwarnings("ignore", message=".*End of file reached with an empty chunk.*")
        has_markers = len(self.raw.annotations) > 0
        self.player = PlayerLSL(self.raw, chunk_size=self.chunk_size, n_repeat=self.repeat, name=self.name,
                                source_id=f"{self.name}-source", annotations=has_markers or None,
                                annotations_encoding="string")
        self.player.start()
        logger.info("replaying %s (%.1f s, %d channels at %g Hz, %d markers) as LSL stream %r%s",
                    self.path, self.duration, len(self.raw.ch_names), self.raw.info["sfreq"],
                    len(self.raw.annotations), self.name,
                    f" and {self.name}-annotations" if has_markers else "")
        return self

    @property
    def running(self) -> bool:
        return self.player is not None and self.player.running

    def stop(self) -> None:
        if self.player is not None:
            try:
                self.player.stop()
            except RuntimeError:
                pass
            self.player = None

    def __enter__(self) -> Replay:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
